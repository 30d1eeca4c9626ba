using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Worker;

/// <summary>
/// Runs the worker in the generic host. When training ends the application stops; on failure,
/// whatever the exception, the reason is logged in one line and the exit code set to 1 (the
/// host would otherwise return 0: an exception escaping a background service only stops it).
/// </summary>
public sealed class WorkerService(WorkerSettings settings, WorkerModel model, ILogger<WorkerService> logger, IHostApplicationLifetime lifetime)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            var outcome = await new WorkerRunner(settings, logger) { ModelBuilder = model.Builder }.RunAsync(stoppingToken);
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
        catch (Exception e)
        {
            // Anything else (a device error, a socket error of the ring listener, a malformed
            // reply, a bug): still one line with what it was, and a failed exit.
            logger.LogError("Worker {WorkerId} failed: {Reason}", settings.WorkerId, $"{e.GetType().Name}: {e.Message}");
            logger.LogDebug(e, "Worker {WorkerId} failure detail", settings.WorkerId);
            Environment.ExitCode = 1;
        }
        finally
        {
            lifetime.StopApplication();
        }
    }
}
