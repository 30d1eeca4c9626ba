namespace BnDist.Cli.Tests;

/// <summary>bndist launch with real OS processes on loopback.</summary>
public sealed class LaunchTests
{
    private static (int Code, string Output) Bndist(params string[] args)
    {
        var (code, stdout, stderr) = BndistProcess.Run(args);
        return (code, stdout + stderr);
    }

    [Fact]
    public void Launch_trains_with_two_worker_processes_and_writes_a_loadable_checkpoint()
    {
        string dir = Directory.CreateTempSubdirectory("bndist-launch-").FullName;
        string checkpoint = Path.Combine(dir, "final.safetensors");
        var (code, output) = Bndist("launch", "--workers", "2", "--model", "mlp-paper", "--steps", "6", "--batch-size", "9",
            "--quiet", "--save", checkpoint);
        Assert.True(code == 0, output);
        Assert.Contains("shards [5, 4]", output);
        Assert.Contains("time per step (ms)", output);
        Assert.Contains("done: 6 steps", output);
        var (evalCode, evalOutput) = Bndist("eval", "--checkpoint", checkpoint);
        Assert.True(evalCode == 0, evalOutput);
        Assert.Contains("mlp-paper/bn at step 6", evalOutput);
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>
    /// The networks of issue 12 on real processes and colour data: three workers with uneven
    /// shards train on 32×32 RGB images from safetensors files, evaluate, and eval reloads the
    /// checkpoint.
    /// </summary>
    [Theory]
    [InlineData("resnet20")]
    [InlineData("bn-inception")]
    public void Launch_trains_a_residual_or_inception_network_on_colour_images_on_three_workers(string model)
    {
        using var data = TinyData.SafeTensors(train: 16, test: 8, size: 32, channels: 3);
        string checkpoint = data.File("final.safetensors");
        var (code, output) = Bndist("launch", "--workers", "3", "--data", data.Path, "--model", model, "--steps", "2", "--batch-size", "8",
            "--augment", "crop:4,flip", "--quiet", "--save", checkpoint);
        Assert.True(code == 0, output);
        Assert.Contains("shards [3, 3, 2]", output);
        Assert.Contains("done: 2 steps", output);
        var (evalCode, evalOutput) = Bndist("eval", "--checkpoint", checkpoint, "--data", data.Path);
        Assert.True(evalCode == 0, evalOutput);
        Assert.Contains($"{model}/bn at step 2", evalOutput);
    }

    [Fact]
    public void Launch_writes_the_initial_checkpoint_and_the_metrics_it_is_asked_for()
    {
        using var data = new TinyData(train: 40, test: 10);
        string init = data.File("init.safetensors"), metrics = data.File("metrics.jsonl"), trainInit = data.File("train-init.safetensors");
        var (code, output) = Bndist("launch", "--workers", "2", "--data", data.Path, "--model", "mlp-paper", "--steps", "4", "--batch-size", "8",
            "--seed", "5", "--quiet", "--save-init", init, "--metrics-out", metrics);
        Assert.True(code == 0, output);

        // The initial state: step 0, the model of the run's seed, as train --save-init writes it.
        Assert.Equal(0, BnDist.Core.Checkpoints.Checkpoint.ReadInfo(init).Step);
        var (trainCode, trainOutput) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--steps", "1", "--batch-size", "8",
            "--seed", "5", "--no-eval", "--quiet", "--save-init", trainInit);
        Assert.True(trainCode == 0, trainOutput);
        var expected = BnDist.Core.Checkpoints.SafeTensorsFile.Read(trainInit).Tensors.ToDictionary(t => t.Name, t => t.Data);
        var actual = BnDist.Core.Checkpoints.SafeTensorsFile.Read(init).Tensors.ToDictionary(t => t.Name, t => t.Data);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, bytes) in expected) Assert.True(bytes.AsSpan().SequenceEqual(actual[name]), $"{name} differs");

        // The metrics: train's fields, one line per step, then the evaluation at the end.
        var lines = File.ReadAllLines(metrics).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        var steps = lines.Where(l => l.TryGetProperty("loss", out _)).ToList();
        Assert.Equal([1, 2, 3, 4], steps.Select(l => l.GetProperty("step").GetInt32()));
        foreach (var l in steps)
        {
            Assert.Equal(1, l.GetProperty("epoch").GetInt32());
            Assert.True(double.IsFinite(l.GetProperty("loss").GetDouble()));
            Assert.True(l.GetProperty("lr").GetDouble() > 0);
            Assert.True(l.GetProperty("samples_per_s").GetDouble() > 0);
        }
        var evaluation = Assert.Single(lines, l => l.TryGetProperty("test_accuracy", out _));
        Assert.Equal(4, evaluation.GetProperty("step").GetInt32());
        Assert.InRange(evaluation.GetProperty("test_accuracy").GetDouble(), 0, 1);
        Assert.True(double.IsFinite(evaluation.GetProperty("test_loss").GetDouble()));
    }

    [Fact]
    public void Launch_drops_an_incomplete_last_batch_on_coordinator_and_workers_alike()
    {
        // 19 = 2·9 + 1: a kept last batch would give the mlp's BatchNorm1d one value per channel.
        using var data = new TinyData(train: 19, test: 10);
        var (code, output) = Bndist("launch", "--workers", "2", "--data", data.Path, "--model", "mlp-paper", "--epochs", "2", "--batch-size", "9",
            "--quiet", "--no-eval");
        Assert.True(code == 0, output);
        Assert.Contains("done: 4 steps", output);
    }

    [Fact]
    public void Launch_with_keep_last_batch_refuses_a_batch_norm_layer_one_value_per_channel_before_starting_any_worker()
    {
        using var data = new TinyData(train: 19, test: 10);
        var (code, stdout, stderr) = BndistProcess.Run(["launch", "--workers", "2", "--data", data.Path, "--model", "mlp-paper", "--epochs", "1",
            "--batch-size", "9", "--keep-last-batch"]);
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("bndist launch: --keep-last-batch: the last batch of each epoch holds 1 of 9 samples (19 mod 9)", stderr);
        Assert.DoesNotContain("coordinator http", stdout); // no cluster was started
    }
}
