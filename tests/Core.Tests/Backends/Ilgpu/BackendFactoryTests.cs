using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Backends.Ilgpu;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>--device strings: what each opens, and the error for a device that is not there.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class BackendFactoryTests
{
    private static bool CudaPresent() => IlgpuDevices.List().Any(d => d.StartsWith("cuda:", StringComparison.Ordinal));

    [Fact]
    public void Cpu_IsTheCpuBackend()
    {
        using var backend = BackendFactory.Create(" CPU ", 1);
        Assert.IsType<CpuBackend>(backend);
    }

    [SkippableFact]
    public void Auto_WithoutGpu_IsTheFastCpuBackend_NotTheSimulator()
    {
        Skip.If(IlgpuDevices.List().Count > 0, "a GPU is present: auto opens it");
        using var backend = BackendFactory.Create("auto", 1);
        Assert.IsType<CpuBackend>(backend);
    }

    [Fact]
    public void AbsentCudaDevice_IsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => BackendFactory.Create("cuda:7", 1));
        Assert.StartsWith("--device cuda:7: ", e.Message);
        Assert.Matches(@"(no CUDA device found|\d+ CUDA devices? found \(cuda:0 )", e.Message);
    }

    [Fact]
    public void AbsentOpenCLDevice_IsAClearError()
    {
        var e = Assert.Throws<ArgumentException>(() => BackendFactory.Create("opencl:9", 1));
        Assert.StartsWith("--device opencl:9: ", e.Message);
        Assert.Contains("OpenCL device", e.Message);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:x")]
    [InlineData("cuda:-1")]
    public void UnknownDevice_ListsTheChoices(string device)
    {
        var e = Assert.Throws<ArgumentException>(() => BackendFactory.Create(device, 1));
        Assert.Contains("expected auto, cpu, cuda[:N], opencl[:N], ilgpu-cpu", e.Message);
    }

    [SkippableFact]
    public void Cuda_OpensTheFirstDevice_WithItsName()
    {
        Skip.If(!CudaPresent(), "no CUDA device: nothing to open");
        using var backend = BackendFactory.Create("cuda", 1);
        Assert.StartsWith("cuda:0 (", backend.Name);
    }

    [Fact]
    public void Local_ranks_take_the_gpus_of_this_machine_round_robin()
    {
        static int Two(string kind) => kind == "cuda" ? 2 : 0;
        Assert.Equal(["cuda:0", "cuda:1", "cuda:0", "cuda:1"], Enumerable.Range(0, 4).Select(r => BackendFactory.ForLocalRank("cuda", r, Two)));
        Assert.Equal("cuda:1", BackendFactory.ForLocalRank("cuda:1", 0, Two)); // an explicit index is kept
        Assert.Equal("cpu", BackendFactory.ForLocalRank("cpu", 3, Two));
        Assert.Equal("opencl", BackendFactory.ForLocalRank("opencl", 1, Two)); // none here: the worker names the absence
    }
}
