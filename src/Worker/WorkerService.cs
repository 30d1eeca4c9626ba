using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Worker;

/// <summary>
/// Runs the worker in the generic host. When training ends the application stops; on failure
/// the reason is logged and the exit code set to 1 (RunAsync would otherwise return 0).
/// </summary>
public sealed class WorkerService(WorkerSettings settings, ILogger<WorkerService> logger, IHostApplicationLifetime lifetime)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var outcome = await new WorkerRunner(settings, logger).RunAsync(stoppingToken);
            logger.LogInformation("Worker {WorkerId} (rank {Rank}) finished {Steps} steps; test accuracy {Accuracy:F4}",
                settings.WorkerId, outcome.Rank, outcome.Steps, outcome.TestAccuracy);
        }
        catch (Exception e) when (stoppingToken.IsCancellationRequested && e is OperationCanceledException or ClusterException)
        {
            // Stopped (Ctrl-C, SIGTERM): the cancelled call to the coordinator is the consequence, not the cause.
            logger.LogWarning("Worker {WorkerId} interrupted", settings.WorkerId);
            Environment.ExitCode = 130;
        }
        catch (Exception e) when (e is ClusterException or IOException or InvalidDataException or ArgumentException or InvalidOperationException)
        {
            logger.LogError("Worker {WorkerId} failed: {Reason}", settings.WorkerId, e.Message);
            Environment.ExitCode = 1;
        }
        finally
        {
            lifetime.StopApplication();
        }
    }
}
