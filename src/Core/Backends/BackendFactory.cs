using BnDist.Core.Backends.Cpu;
using BnDist.Core.Backends.Ilgpu;

namespace BnDist.Core.Backends;

/// <summary>Turns a --device string into a backend.</summary>
public static class BackendFactory
{
    /// <summary>
    /// "cpu": the fast CPU backend with <paramref name="threads"/> threads (0 = all cores).
    /// "cuda", "cuda:N", "opencl", "opencl:N": the ILGPU backend on that device.
    /// "ilgpu-cpu": the ILGPU backend on ILGPU's CPU simulator (tests the kernels; slow).
    /// "auto": the first CUDA device, else the first OpenCL GPU, else "cpu" — never the simulator.
    /// A device asked for and absent is an <see cref="ArgumentException"/> saying what was found.
    /// </summary>
    public static IBackend Create(string device, int threads)
    {
        string d = device.Trim().ToLowerInvariant();
        switch (d)
        {
            case "cpu":
                return new CpuBackend(threads);
            case "auto":
                return IlgpuDevices.TryOpenBestGpu() ?? (IBackend)new CpuBackend(threads);
            case "ilgpu-cpu":
                return IlgpuDevices.OpenCpuSimulator();
        }
        if (TryIndex(d, "cuda", out int cuda)) return IlgpuDevices.OpenCuda(cuda, device);
        if (TryIndex(d, "opencl", out int cl)) return IlgpuDevices.OpenOpenCL(cl, device);
        throw new ArgumentException($"--device: unknown device '{device}' (expected auto, cpu, cuda[:N], opencl[:N], ilgpu-cpu)");
    }

    /// <summary>
    /// The device of local rank <paramref name="rank"/> when K workers share this machine, as
    /// torchrun's one process per GPU: "cuda" and "opencl" without an index go round-robin over
    /// the devices of that kind found here ("cuda:0", "cuda:1", "cuda:0", …); anything else
    /// (an explicit index, cpu, auto, ilgpu-cpu) is passed on unchanged.
    /// </summary>
    public static string ForLocalRank(string device, int rank, Func<string, int>? count = null)
    {
        string d = device.Trim().ToLowerInvariant();
        if (d is not ("cuda" or "opencl")) return device;
        int devices = (count ?? IlgpuDevices.Count)(d);
        if (devices == 0) return device; // the worker reports the absence with the list of what exists
        return $"{d}:{rank % devices}";
    }

    /// <summary>"kind" → 0, "kind:N" → N.</summary>
    private static bool TryIndex(string d, string kind, out int index)
    {
        index = 0;
        if (d == kind) return true;
        return d.StartsWith(kind + ":", StringComparison.Ordinal)
            && int.TryParse(d.AsSpan(kind.Length + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index);
    }
}
