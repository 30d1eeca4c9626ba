using BnDist.Core.Backends;
using BnDist.Core.Layers;

namespace BnDist.Core.Collectives;

/// <summary>
/// Parameter gradients seen as one run of values, in the order given: what every gradient reducer
/// hands to its transport (a bucket, or all gradients at once). On a backend whose tensors live in
/// host memory the values are the gradients themselves (<see cref="InPlace"/>) and the transport sums
/// them where they lie; otherwise they are a host buffer that <see cref="Gather"/> fills from the
/// device and <see cref="Scatter"/> copies back.
/// </summary>
public sealed class FlatGradients
{
    private readonly IBackend _backend;
    private readonly float[]? _buffer;

    public FlatGradients(IBackend backend, IReadOnlyList<Parameter> parameters)
    {
        (_backend, Parameters) = (backend, parameters);
        var segments = new Memory<float>[parameters.Count];
        InPlace = true;
        for (int i = 0; i < parameters.Count && InPlace; i++)
            InPlace = backend.TryGetHostMemory(parameters[i].Grad, out segments[i]);
        if (InPlace)
        {
            Values = new FloatSegments(segments);
        }
        else
        {
            _buffer = new float[Length(parameters)];
            Values = new FloatSegments(_buffer);
        }
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The gradients' values, end to end: the transport sums these.</summary>
    public FloatSegments Values { get; }

    /// <summary>Whether <see cref="Values"/> are the gradients themselves (nothing to gather or scatter).</summary>
    public bool InPlace { get; }

    /// <summary>The number of values of <paramref name="parameters"/>' gradients together.</summary>
    public static int Length(IReadOnlyList<Parameter> parameters)
    {
        int total = 0;
        for (int i = 0; i < parameters.Count; i++) total += parameters[i].Grad.Length;
        return total;
    }

    /// <summary>Brings the gradients into <see cref="Values"/> (a copy from the device; nothing in place). On the backend's thread.</summary>
    public void Gather()
    {
        if (_buffer is null) return;
        int at = 0;
        for (int i = 0; i < Parameters.Count; i++)
        {
            var grad = Parameters[i].Grad;
            _backend.Download(grad, _buffer.AsSpan(at, grad.Length));
            at += grad.Length;
        }
    }

    /// <summary>Brings <see cref="Values"/> back into the gradients (nothing in place). On the backend's thread.</summary>
    public void Scatter()
    {
        if (_buffer is null) return;
        int at = 0;
        for (int i = 0; i < Parameters.Count; i++)
        {
            var grad = Parameters[i].Grad;
            _backend.Upload(_buffer.AsSpan(at, grad.Length), grad);
            at += grad.Length;
        }
    }
}
