using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Backends.Ilgpu;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// The GEMM as a GPU runs it — groups of 16×16 threads, 64×64 tiles, K slices of 16 — on the CPU
/// simulator configured with 256-thread groups (slow: every thread is an OS thread, so only two
/// small products). The other simulator tests run 4×4 groups with 16×16 tiles.
/// </summary>
[Collection(IlgpuCollection.Name)]
public sealed class GpuGroupShapeTests
{
    [Fact]
    public void ConvAndLinear_With256ThreadGroups_MatchCpu()
    {
        using var backend = IlgpuDevices.OpenCpuSimulator(groupSize: 256);
        using var cpu = new CpuBackend(1);
        var rng = new Random(11);

        // Cout = 70 and the 7×6 output span two 64-wide tiles each way, K = 27 two K slices.
        var g = new ConvGeometry(2, 3, 7, 6, 70, 3, 3, 1, 1);
        int hw = g.OutHeight * g.OutWidth;
        float[] x = BackendOpsTests.Random(rng, 2 * 3 * 7 * 6), w = BackendOpsTests.Random(rng, 70 * 27);
        float[] b = BackendOpsTests.Random(rng, 70), dy = BackendOpsTests.Random(rng, 2 * 70 * hw);
        var expected = BackendOpsTests.Conv(cpu, g, x, w, b, dy);
        var bound = BackendOpsTests.Conv(cpu, g, BackendOpsTests.Abs(x), BackendOpsTests.Abs(w), BackendOpsTests.Abs(b), BackendOpsTests.Abs(dy));
        var got = BackendOpsTests.Conv(backend, g, x, w, b, dy);
        BackendOpsTests.AssertProducts(expected.Y, got.Y, bound.Y, 28, "y");
        BackendOpsTests.AssertProducts(expected.Dx, got.Dx, bound.Dx, 70 * 9, "dx");
        BackendOpsTests.AssertProducts(expected.Dw, got.Dw, bound.Dw, 2 * hw, "dw");
        BackendOpsTests.AssertProducts(expected.Db, got.Db, bound.Db, 2 * hw, "db");

        float[] lx = BackendOpsTests.Random(rng, 3 * 70), lw = BackendOpsTests.Random(rng, 67 * 70);
        float[] lb = BackendOpsTests.Random(rng, 67), ldy = BackendOpsTests.Random(rng, 3 * 67);
        var le = BackendOpsTests.Linear(cpu, 3, 70, 67, lx, lw, lb, ldy);
        var lbound = BackendOpsTests.Linear(cpu, 3, 70, 67, BackendOpsTests.Abs(lx), BackendOpsTests.Abs(lw), BackendOpsTests.Abs(lb), BackendOpsTests.Abs(ldy));
        var lg = BackendOpsTests.Linear(backend, 3, 70, 67, lx, lw, lb, ldy);
        BackendOpsTests.AssertProducts(le.Y, lg.Y, lbound.Y, 71, "linear y");
        BackendOpsTests.AssertProducts(le.Dx, lg.Dx, lbound.Dx, 67, "linear dx");
        BackendOpsTests.AssertProducts(le.Dw, lg.Dw, lbound.Dw, 3, "linear dw");
    }
}
