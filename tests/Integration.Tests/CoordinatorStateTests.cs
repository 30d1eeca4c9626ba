using BnDist.Core.Training;
using BnDist.Testing;

namespace BnDist.Integration.Tests;

/// <summary>What the coordinator shows the outside (progress events) follows the run and never holds it up.</summary>
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
}
