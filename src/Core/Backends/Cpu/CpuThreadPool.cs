using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// A tiny fork-join pool for the CPU kernels: <see cref="For"/> runs <c>body(i)</c> for every
/// <c>i</c> in <c>[0, count)</c> on up to <see cref="Threads"/> threads — the caller plus
/// <c>Threads − 1</c> persistent workers — and returns when all indices are done.
/// </summary>
/// <remarks>
/// <para>
/// Indices are handed out dynamically from one shared counter, so a worker that wakes late, or whose core
/// the host lends to another process for a while, simply ends up doing fewer of them. Callers that need
/// deterministic results must make each index's work independent of the thread that runs it (the GEMM and
/// convolution kernels do: every index owns its output and scratch; reductions run afterwards in index order).
/// </para>
/// <para>
/// Protocol. The caller publishes a job (body, count, counter reset) and bumps a generation number. Workers
/// spin on the generation for <see cref="SpinMicroseconds"/> — enough to bridge the back-to-back kernel calls
/// of a training step at sub-microsecond wake latency — and then block on a monitor, so an idle pool costs
/// no CPU. A worker takes part by entering (<c>_active</c>++) and re-checking that the job it saw is still
/// the current, fully published one; the caller waits only for workers that have entered. A worker that is
/// descheduled or asleep therefore never delays <see cref="For"/>: if it shows up after the caller has
/// claimed every index, it finds nothing to do. Publishing first raises <c>_publishing</c> and waits for the
/// entered count to drop to zero, so nobody reads a half-written job (both sides use full fences).
/// Nothing is allocated per call.
/// </para>
/// <para>
/// Reentrancy: one <see cref="For"/> runs on the pool at a time. A <see cref="For"/> issued while the pool
/// is busy — from inside a body (nested parallelism) or from a second outside thread — runs inline on its
/// calling thread instead of deadlocking. <c>Threads == 1</c> always runs inline.
/// </para>
/// </remarks>
public sealed class CpuThreadPool : IDisposable
{
    /// <summary>How long a waiting thread spins before it blocks.</summary>
    private const int SpinMicroseconds = 50;
    private static readonly long SpinTicks = Math.Max(1, Stopwatch.Frequency * SpinMicroseconds / 1_000_000);

    private readonly Thread[] _workers;
    private readonly object _wakeGate = new();
    private readonly object _doneGate = new();

    // The current job; written only while _publishing is set and no worker has entered.
    private Action<int>? _body;
    private int _count;
    private int _next;
    private Exception? _error;

    private int _generation;
    private int _publishing;
    private int _active;
    private int _busy;
    private volatile bool _disposed;

    /// <summary>Creates a pool that runs <see cref="For"/> on <paramref name="threads"/> threads in total
    /// (the caller included), starting <c>threads − 1</c> background workers.</summary>
    public CpuThreadPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        _workers = new Thread[threads - 1];
        for (int t = 0; t < _workers.Length; t++)
        {
            _workers[t] = new Thread(WorkerLoop) { IsBackground = true, Name = $"BnDist.Cpu.{t + 1}" };
            _workers[t].Start();
        }
    }

    /// <summary>Threads that execute a <see cref="For"/>, the calling thread included.</summary>
    public int Threads { get; }

    /// <summary>
    /// Runs <paramref name="body"/>(i) for each i in [0, <paramref name="count"/>) and returns when all have
    /// finished. The first exception thrown by a body is rethrown here (indices not yet started are skipped).
    /// </summary>
    public void For(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (count <= 0)
            return;
        if (_workers.Length == 0 || count == 1 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++)
                body(i);
            return;
        }

        try
        {
            Interlocked.Exchange(ref _publishing, 1);
            SpinUntilIdle(); // a late worker may still be looking at the previous (finished) job
            (_body, _count, _next, _error) = (body, count, 0, null);
            Interlocked.Increment(ref _generation);
            Interlocked.Exchange(ref _publishing, 0);
            lock (_wakeGate)
                Monitor.PulseAll(_wakeGate);

            RunShare();
            WaitUntilIdle();
            _body = null;

            if (_error is { } error)
                ExceptionDispatchInfo.Capture(error).Throw();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Stops and joins the workers. Must not be called while a <see cref="For"/> is running.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        lock (_wakeGate)
        {
            Interlocked.Increment(ref _generation);
            Monitor.PulseAll(_wakeGate);
        }
        foreach (var worker in _workers)
            worker.Join();
    }

    /// <summary>Claims indices until none are left; records the first failure and stops the handout.</summary>
    private void RunShare()
    {
        int count = _count, i;
        while ((i = Interlocked.Increment(ref _next) - 1) < count)
        {
            try
            {
                _body!(i); // read only after a successful claim: a finished job may already be cleared
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref _error, ex, null);
                Volatile.Write(ref _next, count);
            }
        }
    }

    private void SpinUntilIdle()
    {
        while (Volatile.Read(ref _active) != 0)
            Thread.SpinWait(8);
    }

    private void WaitUntilIdle()
    {
        long start = Stopwatch.GetTimestamp();
        while (Volatile.Read(ref _active) != 0 && Stopwatch.GetTimestamp() - start < SpinTicks)
            Thread.SpinWait(8);
        if (Volatile.Read(ref _active) == 0)
            return;
        lock (_doneGate)
        {
            while (Volatile.Read(ref _active) != 0)
                Monitor.Wait(_doneGate);
        }
    }

    private void WorkerLoop()
    {
        int seen = 0;
        while (true)
        {
            int generation = Volatile.Read(ref _generation);
            long start = Stopwatch.GetTimestamp();
            while (generation == seen && Stopwatch.GetTimestamp() - start < SpinTicks)
            {
                Thread.SpinWait(8);
                generation = Volatile.Read(ref _generation);
            }
            if (generation == seen)
            {
                lock (_wakeGate)
                {
                    while ((generation = Volatile.Read(ref _generation)) == seen)
                        Monitor.Wait(_wakeGate);
                }
            }
            seen = generation;
            if (_disposed)
                return;

            // Enter, then make sure the job is still the one announced by `generation` and fully published.
            Interlocked.Increment(ref _active);
            if (Volatile.Read(ref _publishing) == 0 && Volatile.Read(ref _generation) == generation)
                RunShare();
            if (Interlocked.Decrement(ref _active) == 0)
            {
                lock (_doneGate)
                    Monitor.PulseAll(_doneGate);
            }
        }
    }
}
