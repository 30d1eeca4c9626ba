using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
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
        await using var cluster = await Cluster.StartAsync();
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
        await using var cluster = await Cluster.StartAsync();
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

    /// <summary>A coordinator and two worker processes on loopback, training until stopped.</summary>
    private sealed class Cluster : IAsyncDisposable
    {
        private readonly string _dir;

        private readonly List<Output> _workerOutputs;

        private Cluster(string dir, Process coordinator, List<Process> workers)
        {
            (_dir, Coordinator, Workers) = (dir, coordinator, workers);
            CoordinatorOutput = new Output(coordinator).All;
            _workerOutputs = [.. workers.Select(w => new Output(w))];
            WorkerOutputs = [.. _workerOutputs.Select(o => o.All)];
        }

        public Process Coordinator { get; }

        public List<Process> Workers { get; }

        public Task<string> CoordinatorOutput { get; }

        public List<Task<string>> WorkerOutputs { get; }

        public static async Task<Cluster> StartAsync()
        {
            string dir = Directory.CreateTempSubdirectory("bndist-signal-").FullName;
            string token = Path.Combine(dir, "run.token");
            await File.WriteAllTextAsync(token, "a-test-token-for-the-signal-tests");
            if (OperatingSystem.IsLinux()) File.SetUnixFileMode(token, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            int port = FreePort();
            var coordinator = Start("coordinator", "--host", "127.0.0.1", "--port", port.ToString(), "--workers", "2", "--model", "mlp-paper",
                "--steps", "100000", "--batch-size", "8", "--no-eval", "--quiet", "--token-file", token);
            var workers = Enumerable.Range(0, 2).Select(i => Start("worker", "--coordinator", $"http://127.0.0.1:{port}", "--token-file", token,
                "--threads", "1", "--worker-id", $"signal-{i}")).ToList();
            var cluster = new Cluster(dir, coordinator, workers);
            // Every worker has joined and formed the ring (it says which rank it is); then a few steps.
            // A fixed delay is not enough on a loaded machine, and a worker stopped before the run
            // has formed tests something else (the join's deadline).
            var joined = Task.WhenAll(cluster._workerOutputs.Select(o => o.Joined));
            if (await Task.WhenAny(joined, Task.Delay(TimeSpan.FromSeconds(90))) != joined)
            {
                await cluster.DisposeAsync();
                Assert.Fail("the workers did not join within 90 s");
            }
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.False(coordinator.HasExited || workers.Any(w => w.HasExited), "a process ended before the signal");
            return cluster;
        }

        /// <summary>Every process exits within <paramref name="limit"/>, or this fails naming those still running, with everyone's output.</summary>
        public async Task WaitForAllAsync(TimeSpan limit)
        {
            using var cancel = new CancellationTokenSource(limit);
            try
            {
                foreach (var p in Workers.Append(Coordinator)) await p.WaitForExitAsync(cancel.Token);
            }
            catch (OperationCanceledException)
            {
                var names = Workers.Select((w, i) => ($"worker signal-{i}", w)).Append(("coordinator", Coordinator)).ToList();
                string running = string.Join(", ", names.Where(n => !n.Item2.HasExited).Select(n => n.Item1));
                foreach (var (_, p) in names) if (!p.HasExited) p.Kill(entireProcessTree: true);
                var outputs = await Task.WhenAll(WorkerOutputs.Append(CoordinatorOutput));
                Assert.Fail($"still running {limit.TotalSeconds:0} s later: {running}\n" +
                            string.Join("\n", names.Select((n, i) => $"--- {n.Item1}:\n{outputs[i]}")));
            }
        }

        public ValueTask DisposeAsync()
        {
            foreach (var p in Workers.Append(Coordinator))
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.Dispose();
            }
            Directory.Delete(_dir, recursive: true);
            return ValueTask.CompletedTask;
        }
    }

    private static Process Start(params string[] args)
    {
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "bndist"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    /// <summary>Everything a process writes (stdout and stderr, line by line as they come), and whether it has said it joined a run.</summary>
    private sealed class Output
    {
        private readonly StringBuilder _text = new();
        private readonly TaskCompletionSource _joined = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Output(Process p) => All = ReadAsync(p);

        /// <summary>All the output, once the process has closed both streams (exited).</summary>
        public Task<string> All { get; }

        /// <summary>Completes when a worker logs "Worker … is rank r of K in run …".</summary>
        public Task Joined => _joined.Task;

        private async Task<string> ReadAsync(Process p)
        {
            await Task.WhenAll(Pump(p.StandardOutput), Pump(p.StandardError));
            lock (_text) return _text.ToString();
        }

        private async Task Pump(StreamReader reader)
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                lock (_text) _text.AppendLine(line);
                if (line.Contains(" is rank ", StringComparison.Ordinal)) _joined.TrySetResult();
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

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
