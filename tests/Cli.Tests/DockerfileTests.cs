using System.Text.Json;
using System.Text.RegularExpressions;

namespace BnDist.Cli.Tests;

/// <summary>
/// deploy/Dockerfile must run on a base image that provides every shared framework the built
/// bndist needs. No container runtime can pull images on the test machines, so this reads the
/// app's bndist.runtimeconfig.json (what the host resolves at start) and the Dockerfile's last
/// FROM (the runtime stage) instead of building the image.
/// </summary>
public sealed partial class DockerfileTests
{
    /// <summary>The shared frameworks each official .NET image carries (mcr.microsoft.com/dotnet/…).</summary>
    private static readonly Dictionary<string, string[]> FrameworksOfImage = new(StringComparer.Ordinal)
    {
        ["runtime-deps"] = [],
        ["runtime"] = ["Microsoft.NETCore.App"],
        ["aspnet"] = ["Microsoft.NETCore.App", "Microsoft.AspNetCore.App"],
        ["sdk"] = ["Microsoft.NETCore.App", "Microsoft.AspNetCore.App", "Microsoft.WindowsDesktop.App"],
    };

    [Fact]
    public void The_Dockerfile_runtime_image_provides_every_framework_the_built_app_needs()
    {
        string root = RepositoryRoot();
        var (image, tag) = RuntimeImage(File.ReadAllText(Path.Combine(root, "deploy", "Dockerfile")));
        Assert.True(FrameworksOfImage.TryGetValue(image, out var provided), $"unknown base image mcr.microsoft.com/dotnet/{image}:{tag}");

        var needed = NeededFrameworks(RuntimeConfig(root));
        Assert.NotEmpty(needed); // a framework-dependent app: the check below means something
        Assert.All(needed, f => Assert.True(provided.Contains(f.Name),
            $"the app needs {f.Name} {f.Version}, which mcr.microsoft.com/dotnet/{image}:{tag} does not provide"));
        // The image's major.minor must be the one the app was built for.
        Assert.All(needed, f => Assert.True(f.Version.StartsWith(tag + ".", StringComparison.Ordinal),
            $"the app needs {f.Name} {f.Version}, the image is {image}:{tag}"));
    }

    [Fact]
    public void The_framework_check_refuses_the_runtime_image_for_an_ASP_NET_Core_app()
    {
        // What the Dockerfile said before: the check above must be able to fail.
        var (image, _) = RuntimeImage("FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build\nFROM mcr.microsoft.com/dotnet/runtime:10.0\n");
        Assert.Equal("runtime", image);
        var needed = NeededFrameworks(RuntimeConfig(RepositoryRoot()));
        Assert.Contains(needed, f => !FrameworksOfImage[image].Contains(f.Name));
    }

    /// <summary>The last FROM of a multi-stage Dockerfile: the image that runs.</summary>
    private static (string Image, string Tag) RuntimeImage(string dockerfile)
    {
        var from = FromLine().Matches(dockerfile).LastOrDefault();
        Assert.True(from is not null, "the Dockerfile has no FROM mcr.microsoft.com/dotnet/… line");
        return (from.Groups["image"].Value, from.Groups["tag"].Value);
    }

    private static List<(string Name, string Version)> NeededFrameworks(string runtimeConfigPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(runtimeConfigPath));
        var options = doc.RootElement.GetProperty("runtimeOptions");
        var list = new List<(string, string)>();
        if (options.TryGetProperty("framework", out var single)) list.Add((single.GetProperty("name").GetString()!, single.GetProperty("version").GetString()!));
        if (options.TryGetProperty("frameworks", out var many))
            list.AddRange(many.EnumerateArray().Select(f => (f.GetProperty("name").GetString()!, f.GetProperty("version").GetString()!)));
        return list;
    }

    /// <summary>src/Cli/bin/&lt;configuration&gt;/net10.0/bndist.runtimeconfig.json of the configuration these tests were built in.</summary>
    private static string RuntimeConfig(string root)
    {
        // This assembly lies in tests/Cli.Tests/bin/<configuration>/<tfm>/.
        var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string path = Path.Combine(root, "src", "Cli", "bin", tfm.Parent!.Name, tfm.Name, "bndist.runtimeconfig.json");
        Assert.True(File.Exists(path), $"{path} does not exist: build src/Cli first");
        return path;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "BnDist.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no BnDist.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"^\s*FROM\s+mcr\.microsoft\.com/dotnet/(?<image>[a-z-]+):(?<tag>[0-9.]+)", RegexOptions.Multiline | RegexOptions.IgnoreCase)]
    private static partial Regex FromLine();
}
