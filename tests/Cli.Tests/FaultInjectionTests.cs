using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace BnDist.Cli.Tests;

/// <summary>
/// Faults injected into a real cluster on loopback (a coordinator and three worker processes,
/// <c>--timeout 5</c>): a worker killed, a worker stopped, the coordinator killed. Every other
/// process must exit non-zero, with a reason naming the process that failed, within the
/// deadline plus 5 s of the fault. The measured times are in the assertions' messages.
/// </summary>
public sealed class FaultInjectionTests(ITestOutputHelper log)
{
    private const int TimeoutSeconds = 5;
    private const int Workers = 3;
    private const int Victim = 1; // the worker in the middle of the ring: both its neighbours notice
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(TimeoutSeconds + 5);

    /// <summary>
    /// On both statistics transports: shm (the workers of this host wait in shared memory, where
    /// they see the killed process gone from /proc) and grpc (they wait on the coordinator). No
    /// shared-memory segment of the run may be left in /dev/shm.
    /// </summary>
    [Theory]
    [InlineData("shm")]
    [InlineData("grpc")]
    public async Task A_killed_worker_ends_every_other_process_in_time_naming_it(string statsTransport)
    {
        await using var cluster = await StartAsync(statsTransport);
        var faultAt = Stopwatch.StartNew();
        cluster.Workers[Victim].Kill();

        var exits = await ExitTimesAsync(cluster, except: cluster.Workers[Victim], faultAt);
        await AssertFailedNamingAsync(cluster, exits, Names(Victim), $"kill -9 of worker 1 (--stats-transport {statsTransport})");
        // The run's segments are /dev/shm/bndist-RUNID-HOST; the run id is in the coordinator's failure line.
        var run = Regex.Match(await cluster.CoordinatorOutput, @"Run ([0-9a-f]{12}) failed");
        Assert.True(run.Success, "the coordinator did not log its run's failure");
        Assert.Empty(Directory.Exists("/dev/shm") ? Directory.GetFiles("/dev/shm", $"bndist-{run.Groups[1].Value}-*") : []);
    }

    [Theory]
    [InlineData("shm")]
    [InlineData("grpc")]
    public async Task A_stopped_worker_ends_every_other_process_in_time_naming_it(string statsTransport)
    {
        await using var cluster = await StartAsync(statsTransport);
        var stopped = cluster.Workers[Victim];
        try
        {
            var faultAt = Stopwatch.StartNew();
            Assert.Equal(0, BndistProcess.Signal(stopped.Id, 19)); // SIGSTOP: alive, connected, silent

            var exits = await ExitTimesAsync(cluster, except: stopped, faultAt);
            await AssertFailedNamingAsync(cluster, exits, Names(Victim), $"SIGSTOP of worker 1 (--stats-transport {statsTransport})");
        }
        finally
        {
            stopped.Kill(); // SIGKILL ends a stopped process too
        }
    }

    [Fact]
    public async Task A_killed_coordinator_ends_every_worker_in_time_naming_it()
    {
        await using var cluster = await StartAsync();
        var faultAt = Stopwatch.StartNew();
        cluster.Coordinator.Kill();

        var exits = await ExitTimesAsync(cluster, except: cluster.Coordinator, faultAt);
        await AssertFailedNamingAsync(cluster, exits, new Regex($"coordinator at {Regex.Escape(cluster.Address)}"), "kill -9 of the coordinator");
    }

    /// <summary>
    /// A real link cut: the coordinator and two workers in three network namespaces on a bridge
    /// (bench/linkcut.sh), worker 1's link taken down mid-run. The coordinator and worker 0 must
    /// name rank 1; worker 1, cut off from everyone, must fail too (it names whichever it missed
    /// first, the coordinator or its ring neighbour); all within the deadline plus
    /// 5 s. Needs root and network namespaces (CI and the development machines have both).
    /// </summary>
    [SkippableFact]
    public void A_cut_network_link_ends_every_process_in_time_naming_the_rank_cut_off()
    {
        Skip.IfNot(Environment.UserName == "root" && CanCreateNetworkNamespace(), "needs root and network namespaces (ip netns)");
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "BnDist.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no BnDist.sln above the tests");
        string outDir = Directory.CreateTempSubdirectory("bndist-linkcut-").FullName;
        var environment = new Dictionary<string, string> { ["BNDIST"] = Path.Combine(AppContext.BaseDirectory, "bndist"), ["OUT"] = outDir };
        var (code, stdout, stderr) = Script(Path.Combine(root, "bench", "linkcut.sh"), TimeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
            environment, TimeSpan.FromSeconds(120));
        log.WriteLine(stdout + stderr);
        Assert.True(code == 0, $"linkcut.sh exited {code}\n{stdout}{stderr}");
        foreach (var (process, named) in new[] { ("coordinator", Names(1)), ("worker0", Names(1)), ("worker1", new Regex("failed: ")) })
        {
            var line = Regex.Match(stdout, $@"^{process}: exit (\d+) after ([\d.]+) s: (.*)$", RegexOptions.Multiline);
            Assert.True(line.Success, $"{process} did not exit\n{stdout}");
            Assert.NotEqual("0", line.Groups[1].Value);
            double seconds = double.Parse(line.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(seconds <= Limit.TotalSeconds, $"{process} exited {seconds} s after the cut (limit {Limit.TotalSeconds} s)\n{stdout}");
            Assert.True(named.IsMatch(line.Groups[3].Value), $"{process}'s reason does not name the failed process\n{stdout}");
        }
        Directory.Delete(outDir, recursive: true);
    }

    private static bool CanCreateNetworkNamespace()
    {
        string name = $"bnd-probe-{Environment.ProcessId % 100000}";
        try
        {
            if (Script("ip", $"netns add {name}", null, TimeSpan.FromSeconds(10)).Code != 0) return false;
            Script("ip", $"netns del {name}", null, TimeSpan.FromSeconds(10));
            return true;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false; // no ip
        }
    }

    private static (int Code, string Stdout, string Stderr) Script(string file, string args, IReadOnlyDictionary<string, string>? environment, TimeSpan limit)
    {
        var info = new ProcessStartInfo(file.EndsWith(".sh", StringComparison.Ordinal) ? "bash" : file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        if (file.EndsWith(".sh", StringComparison.Ordinal)) info.ArgumentList.Add(file);
        foreach (string a in args.Split(' ')) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        return (p.HasExited ? p.ExitCode : -1, stdout.Result, stderr.Result);
    }

    private static Task<ProcessCluster> StartAsync(string statsTransport = "auto") =>
        ProcessCluster.StartAsync("fault", Workers, "--timeout", TimeoutSeconds.ToString(), "--stats-transport", statsTransport);

    /// <summary>A reason that names rank r, or worker fault-r: "rank 1 (fault-1) disconnected", "rank(s) 1 did not contribute".</summary>
    private static Regex Names(int rank) => new($@"\brank(\(s\))? {rank}\b|\bfault-{rank}\b");

    /// <summary>Seconds from the fault to each process's exit (null: still running at the limit); the processes that are still running are killed.</summary>
    private static async Task<Dictionary<Process, double?>> ExitTimesAsync(ProcessCluster cluster, Process except, Stopwatch faultAt)
    {
        var others = cluster.All.Where(p => p != except).ToList();
        var times = await Task.WhenAll(others.Select(async p =>
        {
            using var limit = new CancellationTokenSource(Limit + TimeSpan.FromSeconds(10)); // wait longer, to report how long it took
            try
            {
                await p.WaitForExitAsync(limit.Token);
                return (double?)faultAt.Elapsed.TotalSeconds;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
        }));
        return others.Zip(times).ToDictionary(x => x.First, x => x.Second);
    }

    private async Task AssertFailedNamingAsync(ProcessCluster cluster, Dictionary<Process, double?> exits, Regex names, string fault)
    {
        string Name(Process p) => p == cluster.Coordinator ? "coordinator" : $"worker {cluster.Workers.IndexOf(p)}";
        string times = string.Join(", ", exits.Select(e => $"{Name(e.Key)} {(e.Value is { } s ? $"{s:F1} s" : "still running")}"));
        foreach (var p in exits.Keys.Where(p => !p.HasExited)) p.Kill();
        string report = $"after {fault} (limit {Limit.TotalSeconds:0} s): {times}\n{cluster.Describe()}";
        log.WriteLine(report);

        Assert.True(exits.Values.All(s => s is { } t && t <= Limit.TotalSeconds), $"not every process exited in time {report}");
        foreach (var p in exits.Keys)
        {
            string output = p == cluster.Coordinator ? await cluster.CoordinatorOutput : await cluster.WorkerOutputs[cluster.Workers.IndexOf(p)];
            Assert.True(p.ExitCode != 0, $"{Name(p)} exited {p.ExitCode} {report}");
            // The one line that says why it failed: "Worker fault-0 failed: …" or the coordinator's "failed: …".
            string? reason = output.Split('\n').LastOrDefault(l => l.Contains("failed: ", StringComparison.Ordinal));
            Assert.True(reason is not null && names.IsMatch(reason), $"{Name(p)}'s reason does not name the failed process: '{reason}' {report}");
        }
    }
}
