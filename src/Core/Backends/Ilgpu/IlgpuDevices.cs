using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// Finds ILGPU devices and opens backends on them: "ilgpu-cpu" (ILGPU's CPU simulator, for
/// tests), "cuda[:N]", "opencl[:N]", and "auto" (the first CUDA device, else the first OpenCL
/// GPU, else none: the caller falls back to the fast CPU backend — never to the simulator).
/// The kernels accumulate statistics in float64, so an OpenCL device without it is refused.
/// A context holds only the accelerator kinds asked for, so looking for CUDA does not
/// initialize OpenCL and vice versa; a missing driver simply means no devices of that kind.
/// </summary>
public static class IlgpuDevices
{
    /// <summary>
    /// A backend on ILGPU's CPU accelerator: a simulator for testing the kernels, far slower than
    /// "cpu". It runs every thread of a group as an OS thread meeting the others at barriers, which
    /// costs far more than the arithmetic; so its groups are small: <paramref name="groupSize"/>
    /// threads (16 by default: 4×4 GEMM groups, 16-thread reductions; 256 gives the GPU's
    /// 16×16 GEMM groups), on <paramref name="multiprocessors"/> simulated multiprocessors.
    /// </summary>
    public static IlgpuBackend OpenCpuSimulator(int groupSize = 16, int multiprocessors = 1)
    {
        if (groupSize < 4 || groupSize % 4 != 0) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "a multiple of 4");
        var device = new CPUDevice(numThreadsPerWarp: 4, numWarpsPerMultiprocessor: groupSize / 4, numMultiprocessors: multiprocessors);
        var context = Context.Create(b => b.CPU(device).Optimize(OptimizationLevel.O1));
        return Open(context, context.GetCPUDevice(0), "ilgpu-cpu");
    }

    /// <summary>A backend on the <paramref name="index"/>-th CUDA device.</summary>
    public static IlgpuBackend OpenCuda(int index, string asked)
    {
        var context = Create(b => b.Cuda());
        var devices = ToList(context.GetCudaDevices());
        if (index < 0 || index >= devices.Count)
        {
            string found = Describe("cuda", devices);
            context.Dispose();
            throw new ArgumentException($"--device {asked}: {found}");
        }
        return Open(context, devices[index], $"cuda:{index} ({devices[index].Name})");
    }

    /// <summary>A backend on the <paramref name="index"/>-th OpenCL device ILGPU supports.</summary>
    public static IlgpuBackend OpenOpenCL(int index, string asked)
    {
        var context = Create(b => b.OpenCL());
        var devices = ToList(context.GetCLDevices());
        if (index < 0 || index >= devices.Count)
        {
            string found = Describe("opencl", devices);
            context.Dispose();
            throw new ArgumentException($"--device {asked}: {found}");
        }
        if (!devices[index].Capabilities.Float64)
        {
            context.Dispose();
            throw new ArgumentException($"--device {asked}: {devices[index].Name} has no float64 support, which the batch-norm sums need");
        }
        return Open(context, devices[index], $"opencl:{index} ({devices[index].Name})");
    }

    /// <summary>The first CUDA device, else the first OpenCL GPU with float64 support, else null.</summary>
    public static IlgpuBackend? TryOpenBestGpu()
    {
        var cuda = Create(b => b.Cuda());
        if (cuda.GetCudaDevices().Count > 0) return Open(cuda, cuda.GetCudaDevice(0), $"cuda:0 ({cuda.GetCudaDevice(0).Name})");
        cuda.Dispose();
        var cl = Create(b => b.OpenCL());
        var devices = ToList(cl.GetCLDevices());
        for (int i = 0; i < devices.Count; i++)
            if (devices[i].DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU && devices[i].Capabilities.Float64)
                return Open(cl, devices[i], $"opencl:{i} ({devices[i].Name})");
        cl.Dispose();
        return null;
    }

    /// <summary>How many devices of a kind ("cuda" or "opencl") ILGPU finds here (0 without a driver).</summary>
    public static int Count(string kind)
    {
        using var context = kind switch
        {
            "cuda" => Create(b => b.Cuda()),
            "opencl" => Create(b => b.OpenCL()),
            _ => throw new ArgumentException($"unknown device kind '{kind}' (expected cuda or opencl)"),
        };
        return kind == "cuda" ? context.GetCudaDevices().Count : context.GetCLDevices().Count;
    }

    /// <summary>One line per GPU device found, e.g. "cuda:0 NVIDIA H100 80GB HBM3, 79.1 GiB"; for logging at start.</summary>
    public static IReadOnlyList<string> List()
    {
        var lines = new List<string>();
        using (var cuda = Create(b => b.Cuda()))
            lines.AddRange(ToList(cuda.GetCudaDevices()).Select((d, i) => Line("cuda", i, d)));
        using (var cl = Create(b => b.OpenCL()))
            lines.AddRange(ToList(cl.GetCLDevices()).Select((d, i) => Line("opencl", i, d) + $" ({d.DeviceType})"));
        return lines;
    }

    /// <summary>"1 CUDA device found (cuda:0 NVIDIA H100)", "no CUDA device found".</summary>
    private static string Describe(string kind, IReadOnlyList<Device> devices)
    {
        string label = kind == "cuda" ? "CUDA" : "OpenCL";
        if (devices.Count == 0) return $"no {label} device found";
        string names = string.Join(", ", devices.Select((d, i) => $"{kind}:{i} {d.Name}"));
        return $"{devices.Count} {label} device{(devices.Count == 1 ? "" : "s")} found ({names})";
    }

    private static string Line(string kind, int index, Device d) =>
        $"{kind}:{index} {d.Name}, {d.MemorySize / (1024.0 * 1024 * 1024):F1} GiB";

    private static List<T> ToList<T>(Context.DeviceCollection<T> devices) where T : Device
    {
        var list = new List<T>();
        foreach (var d in devices) list.Add(d);
        return list;
    }

    private static Context Create(Action<Context.Builder> kinds) =>
        Context.Create(b =>
        {
            kinds(b);
            b.Optimize(OptimizationLevel.O1);
        });

    private static IlgpuBackend Open(Context context, Device device, string name)
    {
        try
        {
            return new IlgpuBackend(context, device, name);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }
}
