using System.Runtime.InteropServices;

namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>
/// The kernel wait primitive under <see cref="SharedMemoryGroup"/>: Linux futex(2) on a 32-bit
/// word of a shared mapping. Not FUTEX_PRIVATE: the waiters are other processes mapping the same
/// file. Elsewhere (no futex) a wait is a 1 ms sleep: correct, only slower.
/// </summary>
internal static unsafe partial class Futex
{
    private const int FutexWait = 0, FutexWake = 1;

    /// <summary>futex is syscall 202 on x86-64 and 98 on ARM64 (the generic table).</summary>
    private static readonly long SysFutex = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 => 98,
        _ => -1,
    };

    public static bool Supported { get; } = OperatingSystem.IsLinux() && SysFutex > 0;

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    // glibc's syscall(2) is variadic; on x86-64 and ARM64 Linux integer arguments travel in the
    // same registers either way, and it reads exactly the registers the kernel call takes.
    [LibraryImport("libc", EntryPoint = "syscall")]
    private static partial long Syscall(long number, int* address, int operation, int value, Timespec* timeout, nint address2, int value3);

    /// <summary>Sleeps while *<paramref name="address"/> == <paramref name="expected"/>, at most <paramref name="timeout"/>; may wake early.</summary>
    public static void Wait(int* address, int expected, TimeSpan timeout)
    {
        if (!Supported)
        {
            Thread.Sleep(1);
            return;
        }
        long ticks = Math.Max(0, timeout.Ticks);
        var ts = new Timespec { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
        Syscall(SysFutex, address, FutexWait, expected, &ts, 0, 0); // EAGAIN (value changed), ETIMEDOUT, EINTR: the caller looks again
    }

    /// <summary>Wakes every waiter on <paramref name="address"/>.</summary>
    public static void WakeAll(int* address)
    {
        if (Supported) Syscall(SysFutex, address, FutexWake, int.MaxValue, null, 0, 0);
    }
}
