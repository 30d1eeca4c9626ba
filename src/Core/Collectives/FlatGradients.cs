using BnDist.Core.Backends;
using BnDist.Core.Layers;

namespace BnDist.Core.Collectives;

/// <summary>
/// Parameter gradients laid end to end in one host buffer, in the order given, and back: what
/// every gradient reducer hands to its transport (a bucket, or all gradients at once).
/// </summary>
public static class FlatGradients
{
    /// <summary>The number of values of <paramref name="parameters"/>' gradients together.</summary>
    public static int Length(IReadOnlyList<Parameter> parameters)
    {
        int total = 0;
        for (int i = 0; i < parameters.Count; i++) total += parameters[i].Grad.Length;
        return total;
    }

    /// <summary>Copies the gradients from the device into <paramref name="flat"/>, one after another.</summary>
    public static void Gather(IBackend backend, IReadOnlyList<Parameter> parameters, Span<float> flat)
    {
        int at = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            var grad = parameters[i].Grad;
            backend.Download(grad, flat.Slice(at, grad.Length));
            at += grad.Length;
        }
    }

    /// <summary>Copies <paramref name="flat"/> back into the gradients on the device.</summary>
    public static void Scatter(IBackend backend, ReadOnlySpan<float> flat, IReadOnlyList<Parameter> parameters)
    {
        int at = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            var grad = parameters[i].Grad;
            backend.Upload(flat.Slice(at, grad.Length), grad);
            at += grad.Length;
        }
    }
}
