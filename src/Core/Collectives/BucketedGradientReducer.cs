using System.Diagnostics;
using System.Runtime.ExceptionServices;
using BnDist.Core.Backends;
using BnDist.Core.Layers;
using BnDist.Core.Models;

namespace BnDist.Core.Collectives;

/// <summary>
/// Gradients summed in buckets that start while backward goes on, as PyTorch DDP's Reducer does.
/// </summary>
/// <remarks>
/// <para>
/// <b>Buckets.</b> The parameters, in reverse forward order (roughly the order backward produces
/// them), are cut into buckets of about <see cref="BucketBytes"/>; a parameter larger than that is a
/// bucket of its own. The plan depends on the model alone, so it is the same on every rank.
/// </para>
/// <para>
/// <b>Overlap.</b> The network calls <see cref="GradientsReady"/> after each layer's backward. When
/// every parameter of the next bucket in order is ready, the training thread hands the bucket to a
/// communication thread, which sums it while backward goes on with earlier layers. On the CPU
/// backend the transport sums the gradients where they lie (<see cref="FlatGradients.InPlace"/>, as
/// DDP's gradient_as_bucket_view); on a device the training thread first copies them into the
/// bucket's host buffer (all backend calls stay on that thread). Buckets are summed strictly in
/// index order, on every rank, so the sequence of all-reduces, and hence the result, is
/// deterministic. <see cref="SumGradients"/> (after backward) hands over whatever is left, waits for
/// the last bucket and copies device buckets' sums back into the gradients.
/// </para>
/// <para>
/// A failure on the communication thread is rethrown by <see cref="SumGradients"/>; after it the
/// reducer sums nothing more.
/// </para>
/// </remarks>
public sealed class BucketedGradientReducer : IGradientReducer, IDisposable
{
    /// <summary>The default bucket size: small enough that a model of a few MiB has several buckets to overlap.</summary>
    public const int DefaultBucketBytes = 256 << 10;

    private readonly IFloatAllReduce _transport;
    private readonly Bucket[] _buckets;
    private readonly Dictionary<Parameter, int> _bucketOf = new(ReferenceEqualityComparer.Instance);
    // Per layer with parameters: the bucket of each of its parameters (no enumeration in the hot path).
    private readonly Dictionary<Layer, int[]> _layerBuckets = new(ReferenceEqualityComparer.Instance);
    private readonly Thread _thread;
    private readonly object _gate = new();
    private readonly Queue<int> _queue = new();
    private int _nextToLaunch, _done;
    private long _step;
    private bool _stopping;
    private ExceptionDispatchInfo? _failure;

    private sealed class Bucket(IBackend backend, Parameter[] parameters)
    {
        public Parameter[] Parameters { get; } = parameters;
        public FlatGradients Gradients { get; } = new(backend, parameters);
        public int Pending;
    }

    public BucketedGradientReducer(IBackend backend, Network network, IFloatAllReduce transport, int bucketBytes = DefaultBucketBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bucketBytes, sizeof(float));
        (_transport, BucketBytes) = (transport, bucketBytes);
        var buckets = new List<Bucket>();
        var current = new List<Parameter>();
        long bytes = 0;
        foreach (var p in network.Parameters.Reverse())
        {
            long size = (long)p.Grad.Length * sizeof(float);
            if (current.Count > 0 && bytes + size > bucketBytes)
            {
                buckets.Add(new Bucket(backend, [.. current]));
                (current, bytes) = ([], 0);
            }
            current.Add(p);
            bytes += size;
        }
        if (current.Count > 0) buckets.Add(new Bucket(backend, [.. current]));
        _buckets = [.. buckets];
        for (int b = 0; b < _buckets.Length; b++)
            foreach (var p in _buckets[b].Parameters) _bucketOf[p] = b;
        foreach (var layer in network.Layers)
            if (layer.Parameters.Any()) _layerBuckets[layer] = [.. layer.Parameters.Select(p => _bucketOf[p])];
        Reset();
        network.OnGradientsReady(GradientsReady);
        _thread = new Thread(Communicate) { IsBackground = true, Name = "gradient buckets" };
        _thread.Start();
    }

    public int BucketBytes { get; }

    /// <summary>The parameter names of each bucket, in the order they are summed.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Buckets => [.. _buckets.Select(b => (IReadOnlyList<string>)[.. b.Parameters.Select(p => p.Name)])];

    /// <summary>Seconds <see cref="SumGradients"/> spent waiting for buckets (the communication backward did not hide), since the start.</summary>
    public double ExposedSeconds { get; private set; }

    /// <summary>How many buckets of the last step were handed over during backward (the rest after it, by <see cref="SumGradients"/>).</summary>
    public int LaunchedDuringBackward { get; private set; }

    /// <summary>The step whose gradients are summed next (it travels in the transport's headers).</summary>
    public void BeginStep(long step) => _step = step;

    /// <summary>A layer's backward is done: its parameters' gradients are final.</summary>
    public void GradientsReady(Layer layer)
    {
        if (_layerBuckets.TryGetValue(layer, out var buckets))
            foreach (int b in buckets) _buckets[b].Pending--;
        LaunchReady(all: false);
    }

    public void SumGradients(IReadOnlyList<Parameter> parameters)
    {
        long t0 = Stopwatch.GetTimestamp();
        if (parameters.Count != _bucketOf.Count || parameters.Any(p => !_bucketOf.ContainsKey(p)))
            throw new InvalidOperationException("the bucketed reducer sums the parameters of the network it was made for");
        LaunchedDuringBackward = _nextToLaunch;
        LaunchReady(all: true);
        lock (_gate)
        {
            while (_done < _buckets.Length && _failure is null) Monitor.Wait(_gate);
            _failure?.Throw();
        }
        foreach (var bucket in _buckets) bucket.Gradients.Scatter();
        Reset();
        ExposedSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }

    /// <summary>Hands over, in order, the buckets whose parameters are all ready (<paramref name="all"/>: every bucket left).</summary>
    private void LaunchReady(bool all)
    {
        while (_nextToLaunch < _buckets.Length && (all || _buckets[_nextToLaunch].Pending <= 0))
        {
            var bucket = _buckets[_nextToLaunch];
            bucket.Gradients.Gather();
            lock (_gate)
            {
                _queue.Enqueue(_nextToLaunch);
                Monitor.PulseAll(_gate);
            }
            _nextToLaunch++;
        }
    }

    private void Reset()
    {
        foreach (var bucket in _buckets) bucket.Pending = bucket.Parameters.Length;
        _nextToLaunch = 0;
        lock (_gate) _done = 0;
    }

    private void Communicate()
    {
        while (true)
        {
            int b;
            long step;
            lock (_gate)
            {
                while (_queue.Count == 0 && !_stopping) Monitor.Wait(_gate);
                if (_stopping) return;
                b = _queue.Dequeue();
                step = _step;
            }
            try
            {
                if (_failure is null) _transport.AllReduce(_buckets[b].Gradients.Values, step);
            }
            catch (Exception e)
            {
                lock (_gate) _failure ??= ExceptionDispatchInfo.Capture(e);
            }
            lock (_gate)
            {
                _done++;
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Stops the communication thread (after the transport has been failed, if it may be blocked in a sum).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join(TimeSpan.FromSeconds(10));
    }
}
