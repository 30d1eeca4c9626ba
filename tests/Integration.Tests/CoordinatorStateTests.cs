using BnDist.Coordinator;
using BnDist.Core.Training;
using BnDist.Testing;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace BnDist.Integration.Tests;

/// <summary>What the coordinator shows the outside (progress events, grpc.health.v1) follows the run and never holds it up.</summary>
public sealed class CoordinatorStateTests
{
    [Fact]
    public async Task A_progress_subscriber_that_blocks_does_not_stall_the_run()
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 30, Evaluate = false };
        using var console = new SemaphoreSlim(0); // a full stderr pipe: the write never returns until released
        int calls = 0;
        var options = new LocalClusterOptions
        {
            OperationTimeout = TimeSpan.FromSeconds(5),
            Observe = run => run.StepCommitted += _ =>
            {
                Interlocked.Increment(ref calls);
                console.Wait();
            },
        };
        await using var cluster = await LocalCluster.StartAsync(config, 2, options);
        try
        {
            // Every worker finishes all its steps while the subscriber is still stuck in its first event.
            var errors = await cluster.WorkerErrorsAsync(TimeSpan.FromSeconds(60));
            Assert.All(errors, e => Assert.Null(e));
            Assert.Equal(30, cluster.Run.CommittedSteps);
            Assert.Equal(1, Volatile.Read(ref calls));
        }
        finally
        {
            console.Release(1000);
        }
        var result = await cluster.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);
        Assert.Equal(30, Volatile.Read(ref calls)); // and every event is delivered, in the end
    }

    [Fact]
    public async Task The_health_service_answers_serving_while_the_run_lives_and_not_serving_once_it_failed()
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 3, Evaluate = false };
        // Gathering: the world waits for a worker the test never sends.
        await using var cluster = await LocalCluster.StartAsync(config, 0, new LocalClusterOptions { ExternalWorkers = 1, KeepServingAfterRun = true });
        using var channel = GrpcChannel.ForAddress(cluster.Address);
        var health = new Health.HealthClient(channel); // no token: the health service is open to orchestrators

        var before = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(10));
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, before.Status);

        cluster.Run.Abort("the test ended the run");
        var after = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(10));
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, after.Status);
    }

    [Fact]
    public async Task The_health_check_reports_the_reason_a_run_failed()
    {
        var run = new RunCoordinator(new CoordinatorSettings { Workers = 1, Training = new TrainingConfig { Model = "mlp-paper" } },
            Microsoft.Extensions.Logging.Abstractions.NullLogger<RunCoordinator>.Instance);
        var check = new RunHealthCheck(run);
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, (await check.CheckHealthAsync(new())).Status);
        run.Abort("rank 1 (w1) disconnected");
        var result = await check.CheckHealthAsync(new());
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, result.Status);
        Assert.Equal("the run failed: rank 1 (w1) disconnected", result.Description);
        run.Dispose();
    }
}
