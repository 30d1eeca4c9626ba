using System.Diagnostics;
using System.Text.RegularExpressions;

namespace BnDist.Cli.Tests;

/// <summary>
/// Ctrl-C (SIGINT) and SIGTERM, sent for real to bndist processes: every process stops
/// promptly, the others learn why, and the exit code is 128 + the signal.
/// </summary>
public sealed class SignalTests
{
    [SkippableTheory]
    [InlineData(15, 143)] // SIGTERM: kill, docker stop, a CI time limit
    [InlineData(2, 130)]  // SIGINT: Ctrl-C
    public async Task Launch_stops_every_process_on_a_signal_and_exits_with_128_plus_its_number(int signal, int expectedCode)
    {
        using var launch = Start("launch", "--workers", "2", "--model", "mlp-paper", "--steps", "100000", "--batch-size", "8", "--no-eval", "--quiet");
        var stdout = launch.StandardOutput.ReadToEndAsync();
        var stderr = launch.StandardError.ReadToEndAsync();
        try
        {
            // Wait until both workers run and the first steps have been taken.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            int[] workers = [];
            while (DateTime.UtcNow < deadline && (workers = ChildrenOf(launch.Id)).Length < 2) await Task.Delay(100);
            Assert.Equal(2, workers.Length);
            await Task.Delay(2000);
            Assert.False(launch.HasExited, "launch ended before the signal");
            // A process started with the signal ignored (a background job of a non-interactive
            // shell ignores SIGINT) cannot be interrupted by it: POSIX keeps the disposition.
            Skip.If(IsIgnored(launch.Id, signal), $"signal {signal} is ignored by this test run's processes (inherited), so it cannot reach launch");

            Assert.Equal(0, Kill(launch.Id, signal));
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await launch.WaitForExitAsync(limit.Token); // throws if launch is still running 30 s after the signal
            string output = await stdout + await stderr;
            Assert.True(launch.ExitCode == expectedCode, $"exit code {launch.ExitCode}\n{output}");
            Assert.Contains("bndist launch: interrupted", output);
            Assert.DoesNotContain(workers, IsRunning);
        }
        finally
        {
            if (!launch.HasExited) launch.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public async Task SIGTERM_to_a_coordinator_ends_the_run_for_every_worker_with_the_reason()
    {
        await using var cluster = await ProcessCluster.StartAsync();
        Assert.Equal(0, Kill(cluster.Coordinator.Id, 15));
        await cluster.WaitForAllAsync(TimeSpan.FromSeconds(30));

        Assert.True(cluster.Coordinator.ExitCode == 143, $"coordinator exit code {cluster.Coordinator.ExitCode}\n{await cluster.CoordinatorOutput}");
        Assert.Contains("bndist coordinator: interrupted", await cluster.CoordinatorOutput);
        for (int i = 0; i < cluster.Workers.Count; i++)
        {
            string output = await cluster.WorkerOutputs[i];
            Assert.True(cluster.Workers[i].ExitCode == 1, $"worker exit code {cluster.Workers[i].ExitCode}\n{output}");
            Assert.Contains("the coordinator aborted the run: the coordinator was interrupted", output);
        }
    }

    [Fact]
    public async Task SIGTERM_to_a_worker_ends_the_run_for_the_others_naming_it()
    {
        await using var cluster = await ProcessCluster.StartAsync();
        Assert.Equal(0, Kill(cluster.Workers[0].Id, 15));
        await cluster.WaitForAllAsync(TimeSpan.FromSeconds(30));

        string stopped = await cluster.WorkerOutputs[0], other = await cluster.WorkerOutputs[1], coordinator = await cluster.CoordinatorOutput;
        Assert.True(cluster.Workers[0].ExitCode == 143, $"worker exit code {cluster.Workers[0].ExitCode}\n{stopped}");
        Assert.Contains("interrupted", stopped);
        Assert.True(cluster.Workers[1].ExitCode == 1, $"worker exit code {cluster.Workers[1].ExitCode}\n{other}");
        // Whichever notices first, the coordinator (the stream ended) or the gradient ring (the
        // connection closed), the survivor names the rank that left: signal-0 sorts first, rank 0.
        Assert.True(Regex.IsMatch(other, @"the coordinator aborted the run: rank 0 \(signal-0\) disconnected|the gradient ring failed in step \d+: rank 0 closed its ring connection"),
            $"the surviving worker does not name rank 0 as the one that left:\n{other}");
        Assert.True(cluster.Coordinator.ExitCode == 1, $"coordinator exit code {cluster.Coordinator.ExitCode}\n{coordinator}");
        Assert.Contains("(signal-0) disconnected", coordinator);
    }

    private static Process Start(params string[] args) => BndistProcess.Start(args);

    private static int Kill(int pid, int signal) => BndistProcess.Signal(pid, signal);

    /// <summary>Processes whose parent is <paramref name="pid"/> (Linux /proc).</summary>
    private static int[] ChildrenOf(int pid) =>
        [.. Directory.EnumerateDirectories("/proc").Select(Path.GetFileName).Where(d => d!.All(char.IsDigit)).Select(int.Parse!)
            .Where(p => StatOf(p) is { } stat && ParentOf(stat) == pid)];

    private static bool IsIgnored(int pid, int signal) =>
        File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("SigIgn:", StringComparison.Ordinal)) is var line &&
        (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (signal - 1))) != 0;

    private static bool IsRunning(int pid) => StatOf(pid) is { } stat && StateOf(stat) != 'Z';

    private static string? StatOf(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return null; }
    }

    // /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces, so parse after the last ')'.
    private static char StateOf(string stat) => stat[stat.LastIndexOf(')') + 2];

    private static int ParentOf(string stat) => int.Parse(stat[(stat.LastIndexOf(')') + 4)..].Split(' ')[0]);
}
