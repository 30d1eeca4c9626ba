using System.Runtime.InteropServices;

namespace BnDist.Worker;

/// <summary>
/// Binds this process to a set of cores (Linux): every thread it has now, and through them every
/// thread it starts later (a new thread inherits its creator's mask). Two workers of one machine
/// each on cores of their own keep their caches warm instead of trading cores at every wake-up:
/// measured, two pinned single-thread workers trained 9–17 % faster than unpinned ones
/// (bench/RESULTS.md, issue 13).
/// </summary>
public static partial class CpuAffinity
{
    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nint size, ReadOnlySpan<ulong> mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nint size, Span<ulong> mask);

    private const int MaskWords = 16; // 1024 CPUs

    /// <summary>The cores this process may run on, ascending (all of ProcessorCount where this cannot be read).</summary>
    public static IReadOnlyList<int> Allowed()
    {
        if (!OperatingSystem.IsLinux()) return [.. Enumerable.Range(0, Environment.ProcessorCount)];
        Span<ulong> mask = stackalloc ulong[MaskWords];
        if (sched_getaffinity(0, MaskWords * sizeof(ulong), mask) != 0) return [.. Enumerable.Range(0, Environment.ProcessorCount)];
        var cores = new List<int>();
        for (int i = 0; i < MaskWords * 64; i++)
            if ((mask[i / 64] & (1UL << (i % 64))) != 0) cores.Add(i);
        return cores;
    }

    /// <summary>Parses "0-3,6": cores, ascending and distinct; an ArgumentException naming --cpus for anything else.</summary>
    public static int[] Parse(string list)
    {
        var cores = new SortedSet<int>();
        foreach (string part in list.Split(',', StringSplitOptions.TrimEntries))
        {
            string[] range = part.Split('-');
            if (range.Length is < 1 or > 2 || !int.TryParse(range[0], out int first) || first < 0 ||
                !int.TryParse(range[^1], out int last) || last < first || last >= MaskWords * 64)
                throw new ArgumentException($"--cpus: '{list}' is not a list of cores such as 0-3,6");
            for (int c = first; c <= last; c++) cores.Add(c);
        }
        return [.. cores];
    }

    /// <summary>Binds every thread of this process to <paramref name="cores"/>; false where the system refuses or is not Linux.</summary>
    public static bool Bind(IReadOnlyCollection<int> cores)
    {
        if (!OperatingSystem.IsLinux() || cores.Count == 0) return false;
        Span<ulong> mask = stackalloc ulong[MaskWords];
        foreach (int c in cores) mask[c / 64] |= 1UL << (c % 64);
        bool all = true;
        foreach (string task in Directory.EnumerateDirectories("/proc/self/task"))
            if (!int.TryParse(Path.GetFileName(task), out int tid) || sched_setaffinity(tid, MaskWords * sizeof(ulong), mask) != 0)
                all = false;
        return all;
    }
}
