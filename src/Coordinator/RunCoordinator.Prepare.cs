using System.Diagnostics;
using BnDist.Core.Checkpoints;
using BnDist.Core.Models;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>
/// The model rendezvous, between the join and the first step. Every rank builds its network
/// (from the configuration, or the user's own code) and describes it: its <see cref="ModelLayout"/>,
/// and for rank 0 the freshly built state. The coordinator never builds the network itself:
/// <list type="number">
/// <item>once every rank has prepared, each layout must equal rank 0's, else the run fails
///   naming the rank and the first difference;</item>
/// <item>the initial state is rank 0's, with an --init checkpoint's parameters and buffers or a
///   --resume checkpoint's whole state (momentum too) imposed on it, each checked name by name
///   and shape by shape against the layout;</item>
/// <item>the batch-norm layers of the layout become the authoritative <see cref="RunningAverages"/>,
///   starting from that state;</item>
/// <item>every rank gets the same image and loads it, so all start bit-identical.</item>
/// </list>
/// A rank that does not prepare within the operation timeout of the first one is named.
/// </summary>
public sealed partial class RunCoordinator
{
    /// <summary>Rank <paramref name="rank"/>'s model; completes with the initial state every rank loads.</summary>
    /// <exception cref="RunAbortedException">The run ended (a layout differs, a rank vanished, a deadline passed).</exception>
    public async Task<byte[]> PrepareAsync(int rank, ModelLayout layout, byte[]? state, CancellationToken cancellation)
    {
        bool complete = false;
        string? refusal = null;
        lock (_gate)
        {
            if (_world is null) throw new RunAbortedException($"rank {rank} prepared before the world was complete");
            if (rank < 0 || rank >= _layouts.Length) throw new RunAbortedException($"rank {rank} is outside the world of {_layouts.Length}");
            if (_layouts[rank] is not null) refusal = $"rank {rank} ({WorkerIdOf(rank)}) prepared its model twice";
            else if (layout.Problem() is { } problem) refusal = $"rank {rank} ({WorkerIdOf(rank)}) described an unusable model: {problem}";
            else if (rank == 0 && state is null) refusal = $"rank 0 ({WorkerIdOf(0)}) sent no initial state with its model";
            else
            {
                if (_layouts.All(l => l is null)) _prepareOpened = Stopwatch.GetTimestamp();
                _layouts[rank] = layout;
                if (rank == 0) _rank0State = state;
                complete = _layouts.All(l => l is not null);
            }
        }
        if (refusal is not null)
        {
            // Outside the lock: the abort runs the hub's callbacks.
            Abort(refusal);
            throw new RunAbortedException(refusal);
        }
        if (complete) CompletePrepare();
        return await _prepared.Task.WaitAsync(cancellation);
    }

    private void CompletePrepare()
    {
        var reference = _layouts[0]!;
        for (int r = 1; r < _layouts.Length; r++)
        {
            if (reference.Difference(_layouts[r]!) is { } difference)
            {
                Abort($"rank {r} ({WorkerIdOf(r)}) builds another model than rank 0 ({WorkerIdOf(0)}): {difference}");
                return;
            }
        }
        SafeTensorsFile initial;
        try
        {
            initial = InitialState(reference, _rank0State!);
        }
        catch (InvalidDataException e)
        {
            Abort(e.Message);
            return;
        }
        _running = new RunningAverages(reference, initial);
        _layout = reference;
        _rank0State = null;
        using var stream = new MemoryStream();
        initial.Write(stream);
        _logger.LogInformation("Run {RunId}: model {Model}/{Norm}, {Tensors} tensors, {BatchNorms} batch-norm layers; every rank prepared",
            RunId, reference.Architecture, reference.Normalization, reference.Tensors.Count, reference.BatchNorms.Count);
        byte[] image = stream.ToArray();
        try
        {
            InitialStateReady?.Invoke(image);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Abort(e.Message);
            return;
        }
        _prepared.TrySetResult(image);
    }

    /// <summary>Rank 0's state, with the --init or --resume checkpoint imposed on it; every name and shape checked.</summary>
    private SafeTensorsFile InitialState(ModelLayout layout, byte[] rank0State)
    {
        SafeTensorsFile own;
        using (var stream = new MemoryStream(rank0State, writable: false)) own = SafeTensorsFile.Read(stream, $"rank 0's ({WorkerIdOf(0)}) initial state");
        Checkpoint.CheckLayout(own, own.SourceName!, layout, withMomentum: true);
        if (_seed is null) return own;
        bool resume = _settings.Resume is not null;
        // --resume continues the checkpoint's run: everything, momentum too. --init takes the
        // parameters and buffers only; the optimizer starts fresh (rank 0's zero momentum).
        Checkpoint.CheckLayout(_seed, _seedPath!, layout, withMomentum: resume);
        var result = new SafeTensorsFile();
        foreach (var (key, value) in own.Metadata) result.SetMetadata(key, value);
        var stateNames = layout.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var t in own.Tensors)
            result.Add(resume || stateNames.Contains(t.Name) ? _seed.Get(t.Name) : t);
        return result;
    }

    /// <summary>Fails the run when some rank has not prepared within the operation timeout of the first.</summary>
    private void CheckPrepareDeadline()
    {
        string? missing = null;
        lock (_gate)
        {
            if (_prepareOpened == 0 || _prepared.Task.IsCompleted || Stopwatch.GetElapsedTime(_prepareOpened) <= OperationTimeout) return;
            missing = string.Join(", ", Enumerable.Range(0, _layouts.Length).Where(r => _layouts[r] is null).Select(r => $"{r} ({WorkerIdOf(r)})"));
        }
        Abort($"rank(s) {missing} did not describe their model within {OperationTimeout.TotalSeconds:0.#} s of the first");
    }
}
