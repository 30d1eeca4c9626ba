using System.Diagnostics;

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
}
