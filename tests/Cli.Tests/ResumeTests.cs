using BnDist.Core.Checkpoints;

namespace BnDist.Cli.Tests;

/// <summary>
/// --resume has one meaning for train, coordinator and launch: continue the checkpoint's run (its
/// configuration from the checkpoint) up to the --steps or --epochs given, else its own; an
/// option that would change the run's math is an error unless --override-config.
/// </summary>
public sealed class ResumeTests : IDisposable
{
    private readonly TinyData _data = new(train: 64, test: 10);

    public void Dispose() => _data.Dispose();

    private static (int Code, string Stdout, string Stderr) Bndist(params string[] args) => BndistProcess.Run(args);

    /// <summary>A 3-step mlp-paper run with a global batch of 8 and a constant learning rate, saved to a checkpoint.</summary>
    private string ThreeStepCheckpoint()
    {
        string path = _data.File("three.safetensors");
        var run = Bndist("train", "--data", _data.Path, "--model", "mlp-paper", "--batch-size", "8", "--lr-schedule", "constant",
            "--steps", "3", "--no-eval", "--quiet", "--save", path);
        Assert.True(run.Code == 0, run.Stdout + run.Stderr);
        return path;
    }

    [Fact]
    public void Train_resume_continues_the_checkpoint_run_to_the_steps_given_and_equals_the_uninterrupted_run()
    {
        string three = ThreeStepCheckpoint(), resumed = _data.File("resumed.safetensors"), straight = _data.File("straight.safetensors");
        // Neither the model nor the batch size is given: they are the checkpoint's.
        var (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three, "--steps", "5", "--no-eval", "--quiet", "--save", resumed);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("bndist train: mlp-paper/bn", stdout);
        Assert.Contains("global batch 8", stdout);
        Assert.Contains("resuming at step 3", stdout);
        Assert.Contains("done: 2 steps", stdout);
        Assert.Equal(5, Checkpoint.ReadInfo(resumed).Step);

        var run = Bndist("train", "--data", _data.Path, "--model", "mlp-paper", "--batch-size", "8", "--lr-schedule", "constant",
            "--steps", "5", "--no-eval", "--quiet", "--save", straight);
        Assert.True(run.Code == 0, run.Stdout + run.Stderr);
        // Same steps, same samples, same optimizer state restored: bit for bit the same parameters and buffers.
        var a = SafeTensorsFile.Read(resumed).Tensors.ToDictionary(t => t.Name, t => t.Data);
        var b = SafeTensorsFile.Read(straight).Tensors.ToDictionary(t => t.Name, t => t.Data);
        Assert.Equal(b.Keys.Order(), a.Keys.Order());
        foreach (var (name, data) in b) Assert.True(data.AsSpan().SequenceEqual(a[name]), $"{name} differs");
    }

    [Fact]
    public void Train_resume_refuses_an_option_that_changes_the_checkpoint_run_unless_asked_to_override_it()
    {
        string three = ThreeStepCheckpoint();
        var (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three, "--steps", "5", "--lr", "0.1", "--batch-size", "16", "--quiet");
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("--batch-size 16 (the checkpoint's: batch size 8)", stderr);
        Assert.Contains("--lr 0.1 (the checkpoint's: lr 0.05)", stderr);
        Assert.Contains("--override-config", stderr);

        // The same value as the checkpoint's is no conflict.
        (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three, "--steps", "4", "--batch-size", "8", "--no-eval", "--quiet");
        Assert.True(code == 0, stdout + stderr);

        (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three, "--steps", "5", "--lr", "0.1", "--override-config",
            "--no-eval", "--quiet");
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("bndist train: --override-config: lr 0.05 → 0.1", stdout);
        Assert.Contains("done: 2 steps", stdout);
    }

    [Fact]
    public void Train_resume_with_nothing_left_to_train_is_an_error()
    {
        string three = ThreeStepCheckpoint();
        var (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three, "--steps", "2");
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Contains("the checkpoint is at step 3 and the run ends at step 2", stderr);
        // Without --steps or --epochs the checkpoint's own run (3 steps) is over.
        (code, stdout, stderr) = Bndist("train", "--data", _data.Path, "--resume", three);
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Contains("nothing to train", stderr);
    }

    [Fact]
    public void Launch_resume_continues_the_checkpoint_run_with_its_configuration()
    {
        string three = ThreeStepCheckpoint(), final = _data.File("final.safetensors");
        var (code, stdout, stderr) = Bndist("launch", "--workers", "2", "--data", _data.Path, "--resume", three, "--steps", "5", "--no-eval",
            "--quiet", "--save", final);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("mlp-paper/bn, global batch 8", stdout);
        Assert.Contains("done: 5 steps", stdout);
        var info = Checkpoint.ReadInfo(final);
        Assert.Equal(5, info.Step);
        Assert.Equal("mlp-paper", info.Model);
        Assert.Equal(8, info.Config!.BatchSize);
    }

    [Theory]
    [InlineData("launch")]
    [InlineData("coordinator")]
    public void Cluster_resume_refuses_an_option_that_changes_the_checkpoint_run(string command)
    {
        string three = ThreeStepCheckpoint();
        var (code, stdout, stderr) = Bndist(command, "--resume", three, "--steps", "5", "--sync-bn", "off", "--port", "0");
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"bndist {command}: --resume continues the checkpoint's run, which these options would change: --sync-bn off (the checkpoint's: sync bn on)", stderr);
    }
}
