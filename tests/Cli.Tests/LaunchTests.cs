using System.Diagnostics;
using System.Runtime.InteropServices;

namespace BnDist.Cli.Tests;

/// <summary>bndist launch with real OS processes on loopback.</summary>
public sealed class LaunchTests
{
    private static (int Code, string Output) Bndist(params string[] args)
    {
        var (code, stdout, stderr) = BndistProcess.Run(args);
        return (code, stdout + stderr);
    }

    [Fact]
    public void Launch_trains_with_two_worker_processes_and_writes_a_loadable_checkpoint()
    {
        string dir = Directory.CreateTempSubdirectory("bndist-launch-").FullName;
        string checkpoint = Path.Combine(dir, "final.safetensors");
        var (code, output) = Bndist("launch", "--workers", "2", "--model", "mlp-paper", "--steps", "6", "--batch-size", "9",
            "--quiet", "--save", checkpoint);
        Assert.True(code == 0, output);
        Assert.Contains("shards [5, 4]", output);
        Assert.Contains("time per step (ms)", output);
        Assert.Contains("done: 6 steps", output);
        var (evalCode, evalOutput) = Bndist("eval", "--checkpoint", checkpoint);
        Assert.True(evalCode == 0, evalOutput);
        Assert.Contains("mlp-paper/bn at step 6", evalOutput);
        Directory.Delete(dir, recursive: true);
    }

    [SkippableTheory]
    [InlineData(15, 143)] // SIGTERM: kill, docker stop, a CI time limit
    [InlineData(2, 130)]  // SIGINT: Ctrl-C
    public async Task Launch_stops_every_process_on_a_signal_and_exits_with_128_plus_its_number(int signal, int expectedCode)
    {
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "bndist"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in new[] { "launch", "--workers", "2", "--model", "mlp-paper", "--steps", "100000", "--batch-size", "8", "--no-eval", "--quiet" })
            info.ArgumentList.Add(a);
        using var launch = Process.Start(info)!;
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
