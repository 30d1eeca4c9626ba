using BnDist.Protos;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace BnDist.Integration.Tests;

/// <summary>A gRPC server on loopback with a Cluster service of the test's making: a coordinator that misbehaves on purpose.</summary>
internal sealed class FakeCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeCoordinator(WebApplication app, string address) => (_app, Address) = (app, address);

    /// <summary>e.g. http://127.0.0.1:40123</summary>
    public string Address { get; }

    public static async Task<FakeCoordinator> StartAsync<TService>(TService service) where TService : class
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = WireLimits.MaxMessageBytes);
        builder.Services.AddSingleton(service);
        // Kestrel's default HTTP/2 windows (768 KiB per stream): a service that does not read fills them soon.
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        var app = builder.Build();
        app.MapGrpcService<TService>();
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new FakeCoordinator(app, address);
    }

    public async ValueTask DisposeAsync()
    {
        using (var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await _app.StopAsync(stopping.Token);
        await _app.DisposeAsync();
    }
}
