using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Backends;

public sealed class ProfilingBackendTests
{
    [Fact]
    public void A_profiled_step_computes_the_same_bits_and_accounts_every_op_per_geometry()
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(8);
        int[] batch = [.. Enumerable.Range(0, 8)];
        float[] Step(IBackend backend, CpuBackend reader)
        {
            var net = ModelFactory.Create("resnet20", backend, SingleProcessCollective.Instance, 1);
            var sgd = new Sgd(backend, net.Parameters, 0.9f, 0f);
            new TrainingStep(backend, net, sgd, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance).Run(data, batch, 8, 0.1f);
            return [.. net.Parameters.SelectMany(p => reader.Read(p.Value))];
        }
        using var plain = new CpuBackend(1);
        using var inner = new CpuBackend(1);
        var profiled = new ProfilingBackend(inner);
        Assert.Equal(Step(plain, plain), Step(profiled, inner));

        var report = profiled.Report();
        Assert.Contains(report, r => r.Op == "Conv2dForward 16→16 3×3/1 on 28×28" && r.Calls == 6);
        Assert.Contains(report, r => r.Op == "Conv2dBackward 1→16 3×3/1 on 28×28 (no dx)" && r.Calls == 1);
        Assert.Contains(report, r => r.Op == "Add + ReLU" && r.Calls == 9); // 9 blocks' sums, the ReLU fused (forward)
        // backward: the ReLU after every block but the last goes back inside the next block's sum
        Assert.Contains(report, r => r.Op == "Add + ReLU backward" && r.Calls == 8);
        Assert.Contains(report, r => r.Op == "Add" && r.Calls == 1);
        Assert.Contains(report, r => r.Op == "ReluBackward" && r.Calls == 1);
        Assert.Contains(report, r => r.Op == "BatchNorm normalize + ReLU" && r.Calls == 10); // the stem's and each block's bn1
        Assert.DoesNotContain(report, r => r.Op == "ReluForward");
        Assert.All(report, r => Assert.True(r.Seconds >= 0));
    }
}
