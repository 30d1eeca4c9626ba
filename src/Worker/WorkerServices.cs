using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Training;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace BnDist.Worker;

/// <summary>The network a worker host trains: a user's own (see <see cref="WorkerRunner.ModelBuilder"/>), or null for the run's built-in model.</summary>
public sealed record WorkerModel(Func<TrainingConfig, IBackend, ICollective, Network>? Builder);

/// <summary>Wiring of the worker's generic host.</summary>
public static class WorkerServices
{
    public static IHostApplicationBuilder AddWorkerServices(this IHostApplicationBuilder builder, WorkerSettings settings,
        Func<TrainingConfig, IBackend, ICollective, Network>? modelBuilder = null)
    {
        builder.Services.AddSingleton(settings.Validate());
        builder.Services.AddSingleton(new WorkerModel(modelBuilder));
        builder.Services.AddHostedService<WorkerService>();
        return builder;
    }
}
