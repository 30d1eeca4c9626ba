using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>
/// Reserves the pages of a segment file when it is made. A tmpfs file that is only truncated to
/// its length has no pages yet; when /dev/shm is full (Docker gives containers 64 MiB), the first
/// write to a missing page kills the process with SIGBUS, in the middle of a step and without a
/// word. posix_fallocate makes the shortage an error at attach, named.
/// </summary>
internal static partial class SegmentSpace
{
    private const int Enospc = 28;

    [LibraryImport("libc", EntryPoint = "posix_fallocate")]
    private static partial int PosixFallocate(nint fd, long offset, long length);

    /// <summary>False when the file system has no room for <paramref name="bytes"/>; true when reserved, or when it cannot tell (no posix_fallocate).</summary>
    public static bool TryReserve(SafeFileHandle file, long bytes)
    {
        if (!OperatingSystem.IsLinux()) return true;
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            return PosixFallocate(file.DangerousGetHandle(), 0, bytes) != Enospc; // EOPNOTSUPP and the like: as before, unreserved
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
    }

    /// <summary>The free bytes of the file system holding <paramref name="directory"/>, or null when unknown.</summary>
    public static long? Free(string directory)
    {
        try
        {
            return new DriveInfo(directory).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }
}
