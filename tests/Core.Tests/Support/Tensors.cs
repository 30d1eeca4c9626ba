using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Tests.Support;

internal static class TensorExtensions
{
    public static Tensor From(this IBackend backend, float[] values, params int[] shape)
    {
        var t = backend.Allocate(shape);
        backend.Upload(values, t);
        return t;
    }

    public static float[] Read(this IBackend backend, Tensor t)
    {
        var values = new float[t.Length];
        backend.Download(t, values);
        return values;
    }
}
