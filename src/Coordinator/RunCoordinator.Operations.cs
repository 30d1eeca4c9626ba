using System.Diagnostics;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Training;
using Microsoft.Extensions.Logging;

namespace BnDist.Coordinator;

/// <summary>What happens when an operation completes, and the checkpoint upload.</summary>
public sealed partial class RunCoordinator
{
    // Per rank: compute, BN-statistics exchange, gradient exchange, waiting for the slowest (seconds, summed).
    private double[,] _timings = new double[0, 4];

    /// <summary>Per rank, the mean seconds per step of compute, BN exchange, gradient exchange and waiting for the slowest.</summary>
    public double[,] MeanStepTimings()
    {
        lock (_gate)
        {
            long steps = Math.Max(1, CommittedSteps - _startStep);
            var mean = (double[,])_timings.Clone();
            for (int r = 0; r < mean.GetLength(0); r++)
                for (int k = 0; k < 4; k++) mean[r, k] /= steps;
            return mean;
        }
    }

    /// <summary>Called by the hub (after its lock is released, in order) once every rank has contributed.</summary>
    private void Completed(CompletedOperation op)
    {
        lock (_gate)
            for (int r = 0; r < op.WaitSeconds.Length; r++) _timings[r, 3] += op.WaitSeconds[r];
        var h = op.Header;
        switch (h.Kind)
        {
            case CollectiveKind.BatchNormStats:
                UpdateRunningStatistics(op);
                Broadcast(new SumMessage(h, op.Sum));
                break;
            case CollectiveKind.Gradients:
                break; // already streamed back range by range (ChunkReduced)
            case CollectiveKind.Metrics when h.Layer == -1:
                CommitStep(op);
                break;
            case CollectiveKind.Metrics when h.Layer == Evaluator.EvaluationLayer:
                _testAccuracy = op.Sum[2] > 0 ? op.Sum[1] / op.Sum[2] : double.NaN;
                Broadcast(new SumMessage(h, op.Sum));
                var evaluated = Evaluated;
                double testLoss = op.Sum[2] > 0 ? op.Sum[0] / op.Sum[2] : double.NaN, testAccuracy = _testAccuracy;
                if (evaluated is not null) _events.Writer.TryWrite(() => evaluated(h.Step + 1, testLoss, testAccuracy));
                break;
            default:
                Broadcast(new SumMessage(h, op.Sum));
                break;
        }
    }

    /// <summary>Called by the hub of host leaders (several hosts): the global BN sums go back to the leaders, which share them within their hosts.</summary>
    private void StatisticsCompleted(CompletedOperation op)
    {
        if (op.Header.Kind == CollectiveKind.BatchNormStats) UpdateRunningStatistics(op);
        var answer = new SumMessage(op.Header, op.Sum);
        foreach (int leader in _plan.Leaders) _outboxes[leader].Writer.TryWrite(answer);
    }

    /// <summary>
    /// One host with shared-memory statistics: rank 0's commit carried the step's statistics, one
    /// entry per batch-norm layer that ran; they update the running averages as the hub's results
    /// would have, in the order they came.
    /// </summary>
    private bool ApplyCommittedStatistics(long step)
    {
        (long Step, IReadOnlyList<(int Layer, double[] Values)> Layers)? carried;
        lock (_gate)
        {
            carried = _committedStatistics;
            _committedStatistics = null;
        }
        if (carried is not { } c) return true;
        if (c.Step != step)
        {
            Abort($"rank 0 sent the BN statistics of step {c.Step} with the commit of step {step}");
            return false;
        }
        var seen = new HashSet<int>();
        foreach (var (layer, values) in c.Layers)
        {
            if (!seen.Add(layer))
            {
                Abort($"rank 0's commit of step {step} carried the statistics of batch-norm layer {layer} twice");
                return false;
            }
            if (_running.Update(layer, values) is { } problem)
            {
                Abort($"rank 0's commit of step {step} cannot update the running averages of {_layout?.Architecture ?? "the model"}: {problem}");
                return false;
            }
        }
        return true;
    }

    /// <summary>Called by the hub (after its lock is released, in order) when a range of a gradient sum is final.</summary>
    private void ChunkReduced(OperationHeader header, float[] sum, int offset, int count) =>
        Broadcast(new FloatSumMessage(header, sum, offset, count));

    /// <summary>The coordinator's running averages, from the same reduced vector every worker receives.</summary>
    private void UpdateRunningStatistics(CompletedOperation op)
    {
        if (_running.Update(op.Header.Layer, op.Sum) is { } problem)
            Abort($"{op.Header} cannot update the running averages of {_layout?.Architecture ?? "the model"}: {problem}");
    }

    private void CommitStep(CompletedOperation op)
    {
        var h = op.Header;
        if (!ApplyCommittedStatistics(h.Step)) return;
        long committed = h.Step + 1;
        double seconds = Stopwatch.GetElapsedTime(_lastCommitAt).TotalSeconds;
        _lastCommitAt = Stopwatch.GetTimestamp();
        lock (_gate)
        {
            for (int r = 0; r < op.Timings.Length; r++)
            {
                _timings[r, 0] += op.Timings[r].ComputeSeconds;
                _timings[r, 1] += op.Timings[r].StatsExchangeSeconds;
                _timings[r, 2] += op.Timings[r].GradientExchangeSeconds;
            }
        }
        Interlocked.Exchange(ref _committed, committed);
        bool due = committed == _totalSteps ||
                   (_settings.CheckpointEvery > 0 && committed % _settings.CheckpointEvery == 0);
        bool upload = due && (_settings.FinalCheckpointPath is not null || _settings.CheckpointDirectory is not null);
        if (upload) _checkpointDue = committed;
        double nextLr = committed < _totalSteps ? _schedule!.At(committed) : 0;
        for (int r = 0; r < _outboxes.Length; r++)
            _outboxes[r].Writer.TryWrite(new CommitMessage(h, op.Sum, nextLr, upload && r == 0));
        double n = Math.Max(1, op.Sum[2]);
        if (StepCommitted is { } committedHandler)
            Raise(committedHandler, new StepSummary(h.Step, _totalSteps, (int)(h.Step / _batchesPerEpoch), op.Sum[0] / n, op.Sum[1] / n,
                _schedule!.At(h.Step), op.Sum[2] / seconds, [.. op.PerRank.Select(m => (int)m[2])], op.Timings, op.WaitSeconds));
    }

    private void Broadcast(RankMessage message)
    {
        foreach (var box in _outboxes) box.Writer.TryWrite(message);
    }

    /// <summary>A chunk of rank 0's parameters and optimizer state; the last one writes the checkpoint.</summary>
    public void UploadChunk(int rank, long step, ReadOnlySpan<byte> data, bool last)
    {
        if (rank != 0 || step != _checkpointDue)
        {
            Abort($"rank {rank} uploaded state for step {step}, but the coordinator asked rank 0 for step {_checkpointDue}");
            return;
        }
        _upload ??= new MemoryStream();
        _upload.Write(data);
        if (!last) return;
        byte[] image = _upload.ToArray();
        _upload = null;
        _checkpointDue = -1;
        try
        {
            string path = WriteCheckpoint(image, step);
            _outboxes[0].Writer.TryWrite(new CheckpointSavedMessage(step, path));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Abort($"writing the checkpoint of step {step} failed: {e.Message}");
        }
    }

    /// <summary>Rank 0's parameters and momentum, this coordinator's running statistics; atomic.</summary>
    private string WriteCheckpoint(byte[] image, long step)
    {
        SafeTensorsFile file;
        using (var stream = new MemoryStream(image, writable: false)) file = SafeTensorsFile.Read(stream, $"rank 0's state of step {step}");
        Checkpoint.CheckLayout(file, file.SourceName!, _layout ?? throw new InvalidDataException("rank 0 uploaded a checkpoint before the model was prepared"),
            withMomentum: true);
        if (_settings.Training.SyncBatchNorm && _running.Count > 0)
        {
            // Synchronized: the coordinator's running statistics are authoritative (and equal rank 0's).
            (file, var differed) = _running.Substitute(file);
            foreach (string name in differed)
                _logger.LogWarning("Rank 0's {Buffer} differs from the coordinator's at step {Step}", name, step);
        }
        bool final = step == _totalSteps;
        string path = final && _settings.FinalCheckpointPath is not null
            ? _settings.FinalCheckpointPath
            : Path.Combine(_settings.CheckpointDirectory!, "checkpoint.safetensors");
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        file.WriteAtomic(path);
        LatestCheckpoint = path;
        LatestCheckpointStep = step;
        _logger.LogInformation("Checkpoint of step {Step} written to {Path}", step, path);
        return path;
    }

    /// <summary>The BN running statistics as a safetensors image (one consistent snapshot).</summary>
    public byte[] RunningStatisticsImage() => _running.Image();
}
