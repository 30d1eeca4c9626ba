using BnDist.Protos;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>Wiring of the coordinator's gRPC host.</summary>
public static class CoordinatorServices
{
    /// <summary>
    /// Registers the run (one <see cref="RunCoordinator"/>), gRPC with the token interceptor,
    /// grpc.health.v1 backed by the run's state (<see cref="RunHealthCheck"/>), and Kestrel on
    /// settings.Host:settings.Port speaking HTTP/2 without TLS.
    /// <para>
    /// Liveness: the run counts a rank whose stream is open as alive, so Kestrel pings every
    /// connection that has been silent for a quarter of the operation timeout (at least
    /// <see cref="MinKeepAlive"/>) and closes it when the next quarter passes without a frame:
    /// a worker that is stopped (SIGSTOP), hung below the runtime, or cut off by the network
    /// ends its stream within about half the timeout, and the run names it, even while no
    /// operation is pending (the ranks summing gradients on the ring). A computing worker
    /// answers pings from its runtime's I/O threads, so a long step is not mistaken for a stall.
    /// </para>
    /// <para>
    /// Shutdown: a failed run closes its streams <see cref="RunCoordinator.StreamDrainGrace"/>
    /// after the abort, so the host's shutdown is bounded by <see cref="ShutdownTimeout"/>, not
    /// the default 30 s that a stalled worker's open stream used to cost.
    /// </para>
    /// </summary>
    /// <param name="builder">The host to add them to.</param>
    /// <param name="settings">The run.</param>
    /// <param name="stopWhenRunEnds">Stop the host once the run has ended (as a coordinator process does); false keeps it serving, e.g. for a test to query it.</param>
    public static WebApplicationBuilder AddCoordinatorServices(this WebApplicationBuilder builder, CoordinatorSettings settings, bool stopWhenRunEnds = true)
    {
        settings.Validate();
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton<RunCoordinator>();
        if (stopWhenRunEnds) builder.Services.AddHostedService<RunLifetime>();
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<TokenInterceptor>();
            o.MaxReceiveMessageSize = WireLimits.MaxMessageBytes;
            o.MaxSendMessageSize = WireLimits.MaxMessageBytes;
            o.EnableDetailedErrors = true;
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = ShutdownTimeout);
        builder.Services.AddGrpcHealthChecks().AddCheck<RunHealthCheck>("run");
        // Watch streams the published results: publish every second so they are current. The
        // health service's own log of an unhealthy result would repeat the run's failure every second.
        builder.Logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.None);
        builder.Services.Configure<HealthCheckPublisherOptions>(o => (o.Delay, o.Period) = (TimeSpan.Zero, TimeSpan.FromSeconds(1)));
        builder.Services.Configure<SocketTransportOptions>(o => o.UnsafePreferInlineScheduling = settings.InlineIo);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.Http2.MaxStreamsPerConnection = 1000;
            // Gradient contributions arrive in MiB chunks: flow-control windows of the default
            // 1 MiB (connection) / 768 KiB (stream) would stall every chunk on a window update.
            k.Limits.Http2.InitialConnectionWindowSize = WireLimits.Http2WindowBytes;
            k.Limits.Http2.InitialStreamWindowSize = WireLimits.Http2WindowBytes;
            var keepAlive = KeepAliveOf(TimeSpan.FromSeconds(settings.OperationTimeoutSeconds));
            k.Limits.Http2.KeepAlivePingDelay = keepAlive;
            k.Limits.Http2.KeepAlivePingTimeout = keepAlive;
            // localhost: both loopback addresses (Kestrel picks no free port for both, so port 0 takes IPv4's).
            var (address, localhost) = settings.ListenAddress();
            if (localhost && settings.Port != 0) k.ListenLocalhost(settings.Port, o => o.Protocols = HttpProtocols.Http2);
            else k.Listen(address, settings.Port, o => o.Protocols = HttpProtocols.Http2);
        });
        return builder;
    }

    /// <summary>The most the host waits, once stopping, for calls still open.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(3);

    /// <summary>
    /// The shortest keep-alive ping delay and timeout, whatever the operation timeout. Kestrel
    /// adds a second to each and checks once a second, so a silent connection is closed
    /// 2·(delay + 1 s) to 2·(delay + 1 s) + 1 s after its last frame, and a worker has at least
    /// 2 s to answer a ping.
    /// </summary>
    public static readonly TimeSpan MinKeepAlive = TimeSpan.FromSeconds(1);

    /// <summary>The keep-alive ping delay and timeout for an operation timeout: a quarter of it, at least <see cref="MinKeepAlive"/>.</summary>
    public static TimeSpan KeepAliveOf(TimeSpan operationTimeout) =>
        TimeSpan.FromTicks(Math.Max(MinKeepAlive.Ticks, operationTimeout.Ticks / 4));

    public static WebApplication MapCoordinatorEndpoints(this WebApplication app)
    {
        app.MapGrpcService<ClusterService>();
        app.MapGrpcHealthChecksService();
        return app;
    }

    /// <summary>A coordinator host for the given settings; logging as configured by <paramref name="logging"/>.</summary>
    public static WebApplication Build(CoordinatorSettings settings, Action<ILoggingBuilder>? logging = null, bool stopWhenRunEnds = true)
    {
        // No file watcher on appsettings.json: a run's configuration is fixed when it starts,
        // and watching the content root costs CPU on every build or checkpoint write beside it.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        if (logging is not null) logging(builder.Logging);
        builder.AddCoordinatorServices(settings, stopWhenRunEnds);
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

/// <summary>
/// grpc.health.v1 from the run's state: SERVING while the run gathers its workers or trains;
/// NOT_SERVING once it has ended, with the reason as the description: failed ("the run failed:
/// …"), or finished (the coordinator then serves nothing more: a worker joining would be
/// refused, and the process is about to exit). The gRPC health service computes it on every
/// Check (no cache), so the answer is current.
/// </summary>
public sealed class RunHealthCheck(RunCoordinator run) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var outcome = run.Outcome;
        if (!outcome.IsCompleted)
            return Task.FromResult(HealthCheckResult.Healthy(run.CommittedSteps > 0 ? "training" : "starting"));
        var o = outcome.Result;
        return Task.FromResult(HealthCheckResult.Unhealthy(o.Succeeded ? $"the run finished after {o.CommittedSteps} steps" : $"the run failed: {o.Error}"));
    }
}
