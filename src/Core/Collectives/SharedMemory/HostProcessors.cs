using System.Runtime.InteropServices;

namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>How many processors this host has online, whatever this process was told.</summary>
internal static partial class HostProcessors
{
    private const int ScNprocessorsOnln = 84; // glibc's _SC_NPROCESSORS_ONLN

    [LibraryImport("libc", EntryPoint = "sysconf")]
    private static partial long Sysconf(int name);

    /// <summary>
    /// The online processors of the machine. Not <see cref="Environment.ProcessorCount"/>: launch sets
    /// each worker's DOTNET_PROCESSOR_COUNT to the cores it binds the worker to (one, say), and the
    /// ranks of a host must know whether they have a core each, not one each.
    /// </summary>
    public static int Online { get; } = OperatingSystem.IsLinux() ? (int)Math.Clamp(Sysconf(ScNprocessorsOnln), 1, int.MaxValue) : Environment.ProcessorCount;
}
