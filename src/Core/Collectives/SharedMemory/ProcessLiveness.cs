namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>Whether a process on this host still runs, from /proc (Linux): a zombie counts as gone.</summary>
internal static class ProcessLiveness
{
    /// <summary>False when <paramref name="pid"/> has exited (or is a zombie); true when it runs, or when this cannot be told (no /proc).</summary>
    public static bool IsAlive(int pid)
    {
        if (pid <= 0 || !OperatingSystem.IsLinux()) return true;
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true; // cannot tell: the deadline decides
        }
        // "pid (comm) S ...": the state follows the last ')' (comm may hold parentheses).
        int close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length) return true;
        char state = stat[close + 2];
        return state is not ('Z' or 'X' or 'x');
    }
}
