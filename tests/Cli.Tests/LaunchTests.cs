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
}
