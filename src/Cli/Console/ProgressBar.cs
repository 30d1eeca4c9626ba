using System.Diagnostics;

namespace BnDist.Cli.Console;

/// <summary>
/// A one-line progress bar on stderr, redrawn at most 10 times a second; when stderr is not a
/// terminal it prints a plain line every few seconds instead, so logs stay readable.
/// </summary>
public sealed class ProgressBar(bool enabled)
{
    private readonly bool _interactive = !System.Console.IsErrorRedirected;
    private readonly Stopwatch _sinceDraw = Stopwatch.StartNew();
    private bool _drawn;

    public void Update(long done, long total, string status)
    {
        if (!enabled) return;
        bool last = done == total;
        double every = _interactive ? 0.1 : 5.0;
        if (!last && _drawn && _sinceDraw.Elapsed.TotalSeconds < every) return;
        _sinceDraw.Restart();
        _drawn = true;
        if (_interactive)
        {
            const int width = 30;
            int filled = total == 0 ? width : (int)(width * done / total);
            System.Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {done}/{total} {status}\u001b[K");
            if (last) System.Console.Error.WriteLine();
        }
        else
        {
            System.Console.Error.WriteLine($"step {done}/{total} {status}");
        }
    }

    /// <summary>Prints a line above the bar.</summary>
    public void Line(string text)
    {
        if (_interactive && _drawn && enabled) System.Console.Error.Write("\r\u001b[K");
        System.Console.WriteLine(text);
        _sinceDraw.Reset();
        _drawn = false;
    }
}
