using BnDist.Core.Checkpoints;
using BnDist.Core.Training;

namespace BnDist.Cli.Tests;

/// <summary>
/// --data with safetensors files, --normalize and --augment as a user meets them: on train,
/// on a launch's workers, in the checkpoint, and as one-line errors.
/// </summary>
public sealed class DataTests
{
    private static (int Code, string Stdout, string Stderr) Bndist(params string[] args) => BndistProcess.Run(args);

    private static void AssertOneLineUsageError((int Code, string Stdout, string Stderr) run, string expected)
    {
        Assert.True(run.Code == 2, $"exit code {run.Code}\n{run.Stdout}{run.Stderr}");
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{run.Stderr}");
        Assert.Contains(expected, lines[0]);
    }

    private static TrainingConfig ConfigOf(string checkpoint) => Checkpoint.ReadInfo(checkpoint).Config!;

    private static Dictionary<string, float[]> Parameters(string checkpoint)
    {
        var file = SafeTensorsFile.Read(checkpoint);
        return file.Tensors.Where(t => t.DType == SafeDType.F32 && !t.Name.StartsWith("optimizer.", StringComparison.Ordinal))
            .ToDictionary(t => t.Name, t => file.GetF32(t.Name, t.Shape));
    }

    private static double LargestDifference(Dictionary<string, float[]> a, Dictionary<string, float[]> b) =>
        a.Max(kv => kv.Value.Zip(b[kv.Key], (x, y) => Math.Abs(x - y) / (Math.Abs(x) + 1e-2)).Max());

    [Fact]
    public void Train_one_step_on_a_safetensors_set_with_augmentation_prints_the_normalization_and_records_the_options()
    {
        using var data = TinyData.SafeTensors(train: 16, test: 6);
        string checkpoint = data.File("run.safetensors");
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "8", "--steps", "1",
            "--augment", "flip,crop:4", "--quiet", "--save", checkpoint);
        Assert.True(code == 0, stdout + stderr);
        Assert.Single(stdout.Split('\n'), l => l.StartsWith("normalize: ", StringComparison.Ordinal));
        Assert.Matches(@"normalize: mean 0\.\d{4} std 0\.\d{4} \(computed from the training set\)", stdout);
        Assert.Contains("16 train, 6 test (1×28×28, 10 classes), augment crop:4,flip;", stdout);
        Assert.Contains("done: 1 steps", stdout);
        var config = ConfigOf(checkpoint);
        Assert.Equal(("crop:4,flip", ""), (config.Augment, config.Normalize));

        // eval normalizes the test set as the run did (computed again from the training split).
        var (evalCode, evalOut, evalErr) = Bndist("eval", "--checkpoint", checkpoint, "--data", data.Path);
        Assert.True(evalCode == 0, evalOut + evalErr);
        Assert.Contains("6 test images", evalOut);
    }

    [Fact]
    public void Launch_gives_its_workers_the_normalization_and_augmentation_and_they_train_what_train_trains()
    {
        using var data = TinyData.SafeTensors(train: 24, test: 6);
        string launched = data.File("launch.safetensors"), trained = data.File("train.ckpt"), plain = data.File("plain.ckpt");
        string[] run = ["--data", data.Path, "--model", "mlp-paper", "--batch-size", "12", "--steps", "3", "--seed", "4", "--no-eval", "--quiet",
            "--normalize", "0.5,0.25", "--augment", "crop:3,flip"];
        var (code, stdout, stderr) = Bndist(["launch", "--workers", "2", .. run, "--save", launched]);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("normalize: mean 0.5000 std 0.2500 (--normalize)", stdout + stderr);   // rank 0 says it once
        Assert.Equal(("crop:3,flip", "0.5,0.25"), (ConfigOf(launched).Augment, ConfigOf(launched).Normalize));

        (code, stdout, stderr) = Bndist(["train", .. run, "--save", trained]);
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("normalize: mean 0.5000 std 0.2500 (--normalize)", stdout);
        (code, stdout, stderr) = Bndist(["train", .. run[..^2], "--save", plain]);
        Assert.True(code == 0, stdout + stderr);

        // Two workers with the options equal one process with them (to rounding), and not one without augmentation.
        double same = LargestDifference(Parameters(trained), Parameters(launched));
        double without = LargestDifference(Parameters(trained), Parameters(plain));
        Assert.True(same < 1e-3, $"launch differs from train by {same:E2}");
        Assert.True(without > 1e-2, $"augmentation changed the run by only {without:E2}");
    }

    [Fact]
    public void Resume_refuses_another_augmentation_unless_asked_to_override()
    {
        using var data = TinyData.SafeTensors(train: 16, test: 6);
        string checkpoint = data.File("run.safetensors");
        var (code, stdout, stderr) = Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--batch-size", "8", "--steps", "1",
            "--augment", "crop:2", "--no-eval", "--quiet", "--save", checkpoint);
        Assert.True(code == 0, stdout + stderr);
        AssertOneLineUsageError(Bndist("train", "--data", data.Path, "--resume", checkpoint, "--steps", "2", "--augment", "flip", "--quiet"),
            "--augment flip (the checkpoint's: augment crop:2)");
    }

    [Theory]
    [InlineData(new[] { "--normalize", "0.5" }, "bndist train: --normalize: 1 numbers do not make MEAN,STD pairs")]
    [InlineData(new[] { "--normalize", "0.5,0" }, "bndist train: --normalize: std 0 of channel 0 must be a number > 0")]
    [InlineData(new[] { "--normalize", "0.5,0.2,0.4,0.2" }, "bndist train: --normalize: 2 MEAN,STD pairs for data of 1 channel")]
    [InlineData(new[] { "--augment", "rotate" }, "bndist train: --augment: unknown augmentation 'rotate'")]
    [InlineData(new[] { "--augment", "crop:0" }, "bndist train: --augment: 'crop:0': the crop padding must be an integer in [1, 1024]")]
    public void A_bad_normalize_or_augment_is_one_line_and_exit_code_2(string[] options, string expected)
    {
        using var data = TinyData.SafeTensors(train: 16, test: 6);
        AssertOneLineUsageError(Bndist(["train", "--data", data.Path, "--model", "mlp-paper", "--steps", "1", .. options]), expected);
    }

    [Fact]
    public void A_bad_data_file_is_one_line_naming_the_file_and_the_tensor()
    {
        using var data = TinyData.SafeTensors(train: 16, test: 6);
        var file = new SafeTensorsFile();
        file.Add("images", SafeDType.U8, [4, 28, 28, 1], new byte[4 * 28 * 28]);
        file.AddI64("labels", [4], [0, 1, -2, 3]);
        using (var stream = File.Create(data.File("test.safetensors"))) file.Write(stream);
        AssertOneLineUsageError(Bndist("train", "--data", data.Path, "--model", "mlp-paper", "--steps", "1"),
            $"bndist train: --data: {data.File("test.safetensors")}: tensor labels: label -2 at index 2 is negative");
        AssertOneLineUsageError(Bndist("launch", "--data", data.Path, "--model", "mlp-paper", "--steps", "1"),
            $"bndist launch: --data: {data.File("test.safetensors")}: tensor labels: label -2 at index 2 is negative");
    }
}
