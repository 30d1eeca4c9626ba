using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Backends.Ilgpu;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// One backend under test and the CPU reference, shared by a test class (compiling the
/// kernels takes seconds on the simulator). <see cref="Backend"/> is null, with
/// <see cref="Absent"/> saying why, where the device does not exist.
/// </summary>
public abstract class BackendFixture : IDisposable
{
    protected BackendFixture(Func<IBackend> open)
    {
        try
        {
            Backend = open();
        }
        catch (ArgumentException e)
        {
            Absent = e.Message;
        }
    }

    public IBackend? Backend { get; }

    public string? Absent { get; }

    public CpuBackend Reference { get; } = new(1);

    public void Dispose()
    {
        Backend?.Dispose();
        Reference.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>ILGPU's CPU simulator: always present, so these tests run in CI.</summary>
public sealed class IlgpuCpuFixture() : BackendFixture(() => IlgpuDevices.OpenCpuSimulator());

/// <summary>The first CUDA device, when there is one.</summary>
public sealed class IlgpuCudaFixture() : BackendFixture(() => IlgpuDevices.OpenCuda(0, "cuda:0"));

/// <summary>
/// The ILGPU tests share one collection and its backends (compiled once): the simulator runs
/// every group as 256 OS threads, and two such classes at once on a small machine only slow
/// each other down.
/// </summary>
[CollectionDefinition(Name)]
public sealed class IlgpuCollection : ICollectionFixture<IlgpuCpuFixture>, ICollectionFixture<IlgpuCudaFixture>
{
    public const string Name = "ILGPU";
}
