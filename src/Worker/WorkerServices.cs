using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace BnDist.Worker;

/// <summary>Wiring of the worker's generic host.</summary>
public static class WorkerServices
{
    public static IHostApplicationBuilder AddWorkerServices(this IHostApplicationBuilder builder, WorkerSettings settings)
    {
        builder.Services.AddSingleton(settings.Validate());
        builder.Services.AddHostedService<WorkerService>();
        return builder;
    }
}
