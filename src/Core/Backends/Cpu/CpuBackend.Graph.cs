using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

// PLACEHOLDER while the graph ops are written (issue 12); replaced before it lands.
public sealed unsafe partial class CpuBackend
{
    public void Add(Tensor a, Tensor b, Tensor y) => throw new NotImplementedException();
    public void Multiply(Tensor a, Tensor b, Tensor y) => throw new NotImplementedException();
    public void CopyChannels(in ChannelSlice slice, Tensor source, Tensor destination) => throw new NotImplementedException();
    public void AvgPool2dForward(in PoolGeometry g, Tensor x, Tensor y) => throw new NotImplementedException();
    public void AvgPool2dBackward(in PoolGeometry g, Tensor dy, Tensor dx) => throw new NotImplementedException();
    public void GlobalAvgPoolForward(in ChannelLayout layout, Tensor x, Tensor y) => throw new NotImplementedException();
    public void GlobalAvgPoolBackward(in ChannelLayout layout, Tensor dy, Tensor dx) => throw new NotImplementedException();
    public void DropoutForward(int n, int sampleSize, ReadOnlySpan<ulong> sampleKeys, float p, Tensor x, Tensor mask, Tensor y) => throw new NotImplementedException();
}
