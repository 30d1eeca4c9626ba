using System.Diagnostics;
using BnDist.Protos.V1;
using Grpc.Core;

namespace BnDist.Integration.Tests;

/// <summary>A worker process that fails exits non-zero with its reason, whatever the exception.</summary>
public sealed class WorkerExitTests
{
    [Fact]
    public async Task A_worker_that_fails_with_an_unexpected_exception_exits_non_zero_naming_it()
    {
        // The join's answer carries a run configuration that is not JSON: a JsonException, none of
        // the failures the worker expects by name.
        await using var coordinator = await FakeCoordinator.StartAsync(new GarbledJoin());
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "bndist"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in new[] { "worker", "--coordinator", coordinator.Address, "--worker-id", "garbled", "--threads", "1" })
            info.ArgumentList.Add(a);
        using var worker = Process.Start(info)!;
        try
        {
            var stdout = worker.StandardOutput.ReadToEndAsync();
            var stderr = worker.StandardError.ReadToEndAsync();
            using (var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60))) await worker.WaitForExitAsync(limit.Token);
            string output = await stdout + await stderr;
            Assert.True(worker.ExitCode != 0, $"exit code {worker.ExitCode}\n{output}");
            Assert.Contains("Worker garbled failed: JsonException:", output);
        }
        finally
        {
            if (!worker.HasExited) worker.Kill(entireProcessTree: true);
        }
    }

    private sealed class GarbledJoin : Cluster.ClusterBase
    {
        public override Task<JoinReply> Join(JoinRequest request, ServerCallContext context) => Task.FromResult(new JoinReply
        {
            RunId = "garbled", Rank = 0, WorldSize = 1, ConfigJson = "{ this is not json", OperationTimeoutMs = 5000,
        });
    }
}
