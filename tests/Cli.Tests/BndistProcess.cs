using System.Diagnostics;

namespace BnDist.Cli.Tests;

/// <summary>Runs the built bndist as an OS process, as a user would.</summary>
internal static class BndistProcess
{
    /// <summary>Exit code, stdout and stderr; kills the process tree after <paramref name="limit"/> (3 minutes by default).</summary>
    public static (int Code, string Stdout, string Stderr) Run(string[] args, TimeSpan? limit = null)
    {
        var info = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "bndist"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
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
}
