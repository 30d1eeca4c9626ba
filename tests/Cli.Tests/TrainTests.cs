namespace BnDist.Cli.Tests;

/// <summary>bndist train as a user runs it, on tiny data sets so that whole epochs take a moment.</summary>
public sealed class TrainTests
{
    private static (int Code, string Stdout, string Stderr) Bndist(params string[] args) => BndistProcess.Run(args);

    [Fact]
    public void Train_drops_an_incomplete_last_batch_of_one_sample_and_completes_the_epoch()
    {
        // 19 = 2·9 + 1: the last batch would give the mlp's BatchNorm1d one value per channel.
        using var data = new TinyData(train: 19, test: 10);
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "9", "--epochs", "1", "--quiet");
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("2 steps/epoch", stdout);
        Assert.Contains("done: 2 steps", stdout);
    }

    [Fact]
    public void Train_with_keep_last_batch_refuses_a_batch_norm_layer_one_value_per_channel_in_one_line_before_training()
    {
        using var data = new TinyData(train: 19, test: 10);
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "9", "--epochs", "1",
            "--keep-last-batch", "--quiet");
        Assert.True(code == 2, $"exit code {code}\n{stdout}{stderr}");
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("the last batch of each epoch holds 1 of 9 samples (19 mod 9)", stderr);
        Assert.DoesNotContain("done:", stdout);
    }

    [Fact]
    public void Train_with_keep_last_batch_trains_on_the_incomplete_batch()
    {
        using var data = new TinyData(train: 20, test: 10);
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "9", "--epochs", "1",
            "--keep-last-batch", "--quiet");
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("3 steps/epoch", stdout);
        Assert.Contains("done: 3 steps", stdout);
    }

    [Fact]
    public void Train_with_no_eval_ends_with_not_evaluated_and_prints_no_NaN()
    {
        using var data = new TinyData(train: 20, test: 10);
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "5", "--epochs", "2", "--no-eval");
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches(@"done: 8 steps in [0-9.]+ s; not evaluated\n", stdout);
        Assert.DoesNotContain("NaN", stdout + stderr);
        // With evaluation, each epoch and the end report the test set.
        (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "5", "--epochs", "2", "--quiet");
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("epoch 2: test loss", stdout);
        Assert.Matches(@"done: 8 steps in [0-9.]+ s; test accuracy [0-9.]+, test loss [0-9.]+\n", stdout);
    }
}
