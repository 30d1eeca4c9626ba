using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Backends;

/// <summary>Turns a --device string into a backend.</summary>
public static class BackendFactory
{
    /// <summary>
    /// "cpu" and "auto" (no accelerator backend is built in yet, so auto means the CPU) give
    /// the fast CPU backend with <paramref name="threads"/> threads (0 = all cores).
    /// </summary>
    public static IBackend Create(string device, int threads)
    {
        string d = device.Trim().ToLowerInvariant();
        if (d is "cpu" or "auto") return new CpuBackend(threads);
        if (d.StartsWith("cuda", StringComparison.Ordinal) || d.StartsWith("opencl", StringComparison.Ordinal) || d == "ilgpu-cpu")
            throw new ArgumentException($"--device: '{device}' needs the ILGPU backend, which this build does not include yet (use cpu or auto)");
        throw new ArgumentException($"--device: unknown device '{device}' (expected auto, cpu)");
    }
}
