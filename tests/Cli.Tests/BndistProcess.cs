using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace BnDist.Cli.Tests;

/// <summary>Runs the built bndist as an OS process, as a user would.</summary>
internal static class BndistProcess
{
    /// <summary>Exit code, stdout and stderr; kills the process tree after <paramref name="limit"/> (3 minutes by default).</summary>
    public static (int Code, string Stdout, string Stderr) Run(string[] args, TimeSpan? limit = null,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        using var p = Start(args, environment, workingDirectory);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var wait = limit ?? TimeSpan.FromMinutes(3);
        if (!p.WaitForExit(wait))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"bndist {string.Join(' ', args)} did not finish within {wait.TotalSeconds:0} s");
        }
        p.WaitForExit(); // the redirected streams are complete only after this
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Starts bndist with stdout and stderr redirected, <paramref name="environment"/> added to this process's.</summary>
    public static Process Start(string[] args, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "bndist"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        if (workingDirectory is not null) info.WorkingDirectory = workingDirectory;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        foreach (string a in args) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    /// <summary>
    /// Starts bndist, waits until a line of its stdout contains <paramref name="expected"/>
    /// (or it exits, or <paramref name="limit"/> passes), kills it, and returns that line (null: none came).
    /// </summary>
    public static string? FirstLineContaining(string[] args, string expected, TimeSpan limit,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        using var p = Start(args, environment, workingDirectory);
        _ = p.StandardError.ReadToEndAsync();
        try
        {
            var deadline = DateTime.UtcNow + limit;
            while (DateTime.UtcNow < deadline)
            {
                var line = p.StandardOutput.ReadLineAsync();
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !line.Wait(left) || line.Result is null) return null;
                if (line.Result.Contains(expected, StringComparison.Ordinal)) return line.Result;
            }
            return null;
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>kill(2): sends <paramref name="signal"/> to <paramref name="pid"/>; 0 on success.</summary>
    [DllImport("libc", SetLastError = true, EntryPoint = "kill")]
    public static extern int Signal(int pid, int signal);
}

/// <summary>What a process writes to stdout and stderr, readable while it runs and complete once it has exited.</summary>
internal sealed class ProcessOutput
{
    private readonly StringBuilder _text = new();

    public ProcessOutput(Process p)
    {
        p.OutputDataReceived += (_, e) => Append(e.Data);
        p.ErrorDataReceived += (_, e) => Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        Completed = WaitAsync(p);
    }

    /// <summary>Everything, once the process has exited and both streams are drained.</summary>
    public Task<string> Completed { get; }

    /// <summary>What it has written so far.</summary>
    public string Snapshot()
    {
        lock (_text) return _text.ToString();
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_text) _text.AppendLine(line);
    }

    private async Task<string> WaitAsync(Process p)
    {
        await p.WaitForExitAsync(); // waits for the end of the redirected streams too
        return Snapshot();
    }
}

/// <summary>
/// A coordinator and worker processes on loopback (a real <c>bndist coordinator</c> and
/// <c>bndist worker</c>s sharing a token file), training until stopped; everything killed on dispose.
/// </summary>
internal sealed class ProcessCluster : IAsyncDisposable
{
    private readonly string _dir;

    private ProcessCluster(string dir, string address, Process coordinator, List<Process> workers)
    {
        (_dir, Address, Coordinator, Workers) = (dir, address, coordinator, workers);
        CoordinatorLog = new ProcessOutput(coordinator);
        WorkerLogs = [.. workers.Select(w => new ProcessOutput(w))];
    }

    /// <summary>The coordinator's address, e.g. http://127.0.0.1:40123.</summary>
    public string Address { get; }

    public Process Coordinator { get; }

    /// <summary>Worker i has the id "{prefix}-{i}", hence rank i.</summary>
    public List<Process> Workers { get; }

    public ProcessOutput CoordinatorLog { get; }

    public List<ProcessOutput> WorkerLogs { get; }

    /// <summary>All the coordinator wrote, once it has exited.</summary>
    public Task<string> CoordinatorOutput => CoordinatorLog.Completed;

    /// <summary>All each worker wrote, once it has exited.</summary>
    public List<Task<string>> WorkerOutputs => [.. WorkerLogs.Select(l => l.Completed)];

    /// <summary>
    /// Starts the coordinator (mlp-paper, batch 8, 100000 steps, no evaluation, quiet, plus
    /// <paramref name="coordinatorOptions"/>) and <paramref name="workers"/> workers of one
    /// thread each, and returns once every worker has joined the run and training has gone on a
    /// moment.
    /// </summary>
    public static async Task<ProcessCluster> StartAsync(string workerPrefix = "signal", int workers = 2, params string[] coordinatorOptions)
    {
        string dir = Directory.CreateTempSubdirectory("bndist-cluster-").FullName;
        string token = Path.Combine(dir, "run.token");
        await File.WriteAllTextAsync(token, "a-test-token-for-the-process-cluster");
        if (OperatingSystem.IsLinux()) File.SetUnixFileMode(token, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        int port = BndistProcess.FreePort();
        string address = $"http://127.0.0.1:{port}";
        var coordinator = BndistProcess.Start([
            "coordinator", "--host", "127.0.0.1", "--port", port.ToString(), "--workers", workers.ToString(), "--model", "mlp-paper",
            "--steps", "100000", "--batch-size", "8", "--no-eval", "--quiet", "--token-file", token, .. coordinatorOptions]);
        var processes = Enumerable.Range(0, workers).Select(i => BndistProcess.Start(["worker", "--coordinator", address, "--token-file", token,
            "--threads", "1", "--worker-id", $"{workerPrefix}-{i}"])).ToList();
        var cluster = new ProcessCluster(dir, address, coordinator, processes);
        try
        {
            // Every worker has joined and formed the ring (it logs which rank it is); then a few
            // steps. A fixed delay is not enough on a loaded machine, and a worker stopped before
            // the run has formed tests something else (the join's deadline).
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (DateTime.UtcNow < deadline && !cluster.WorkerLogs.All(l => l.Snapshot().Contains(" is rank ", StringComparison.Ordinal)) &&
                   !cluster.All.Any(p => p.HasExited))
                await Task.Delay(100);
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.False(cluster.All.Any(p => p.HasExited) || !cluster.WorkerLogs.All(l => l.Snapshot().Contains(" is rank ", StringComparison.Ordinal)),
                "the cluster did not start training (every worker joined, none ended):\n" + cluster.Describe());
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
        return cluster;
    }

    public IEnumerable<Process> All => Workers.Append(Coordinator);

    /// <summary>Every process exits within <paramref name="limit"/>, or this fails naming those still running, with everyone's output.</summary>
    public async Task WaitForAllAsync(TimeSpan limit)
    {
        using var cancel = new CancellationTokenSource(limit);
        try
        {
            foreach (var p in All) await p.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            string running = string.Join(", ", All.Where(p => !p.HasExited).Select(p => p == Coordinator ? "coordinator" : $"worker {Workers.IndexOf(p)}"));
            string output = Describe();
            foreach (var p in All) if (!p.HasExited) p.Kill(entireProcessTree: true);
            Assert.Fail($"still running {limit.TotalSeconds:0} s later: {running}\n{output}");
        }
    }

    /// <summary>What every process has written so far, for an assertion's message.</summary>
    public string Describe() =>
        $"--- coordinator:\n{CoordinatorLog.Snapshot()}" +
        string.Concat(WorkerLogs.Select((l, i) => $"--- worker {i}:\n{l.Snapshot()}"));

    public ValueTask DisposeAsync()
    {
        foreach (var p in All)
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { /* gone */ }
            p.Dispose();
        }
        Directory.Delete(_dir, recursive: true);
        return ValueTask.CompletedTask;
    }
}
