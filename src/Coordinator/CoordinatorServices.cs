using BnDist.Protos;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>Wiring of the coordinator's gRPC host.</summary>
public static class CoordinatorServices
{
    /// <summary>
    /// Registers the run (one <see cref="RunCoordinator"/>), gRPC with the token interceptor,
    /// grpc.health.v1, and Kestrel on settings.Host:settings.Port speaking HTTP/2 without TLS.
    /// </summary>
    public static WebApplicationBuilder AddCoordinatorServices(this WebApplicationBuilder builder, CoordinatorSettings settings)
    {
        settings.Validate();
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton<RunCoordinator>();
        builder.Services.AddHostedService<RunLifetime>();
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<TokenInterceptor>();
            o.MaxReceiveMessageSize = WireLimits.MaxMessageBytes;
            o.MaxSendMessageSize = WireLimits.MaxMessageBytes;
            o.EnableDetailedErrors = true;
        });
        builder.Services.AddGrpcHealthChecks();
        builder.Services.Configure<SocketTransportOptions>(o => o.UnsafePreferInlineScheduling = settings.InlineIo);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.Http2.MaxStreamsPerConnection = 1000;
            // Gradient contributions arrive in MiB chunks: flow-control windows of the default
            // 1 MiB (connection) / 768 KiB (stream) would stall every chunk on a window update.
            k.Limits.Http2.InitialConnectionWindowSize = WireLimits.Http2WindowBytes;
            k.Limits.Http2.InitialStreamWindowSize = WireLimits.Http2WindowBytes;
            // localhost: both loopback addresses (Kestrel picks no free port for both, so port 0 takes IPv4's).
            var (address, localhost) = settings.ListenAddress();
            if (localhost && settings.Port != 0) k.ListenLocalhost(settings.Port, o => o.Protocols = HttpProtocols.Http2);
            else k.Listen(address, settings.Port, o => o.Protocols = HttpProtocols.Http2);
        });
        return builder;
    }

    public static WebApplication MapCoordinatorEndpoints(this WebApplication app)
    {
        app.MapGrpcService<ClusterService>();
        app.MapGrpcHealthChecksService();
        return app;
    }

    /// <summary>A coordinator host for the given settings; logging as configured by <paramref name="logging"/>.</summary>
    public static WebApplication Build(CoordinatorSettings settings, Action<ILoggingBuilder>? logging = null)
    {
        // No file watcher on appsettings.json: a run's configuration is fixed when it starts,
        // and watching the content root costs CPU on every build or checkpoint write beside it.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        if (logging is not null) logging(builder.Logging);
        builder.AddCoordinatorServices(settings);
        var app = builder.Build();
        app.MapCoordinatorEndpoints();
        return app;
    }
}

/// <summary>Stops the host once the run has ended, with exit code 1 if it failed.</summary>
internal sealed class RunLifetime(RunCoordinator run, IHostApplicationLifetime lifetime) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var outcome = await run.Outcome.WaitAsync(stoppingToken);
        if (!outcome.Succeeded) Environment.ExitCode = 1;
        // Let the streams deliver their last messages (the abort) before the host stops.
        await Task.Delay(TimeSpan.FromMilliseconds(200), CancellationToken.None);
        lifetime.StopApplication();
    }
}
