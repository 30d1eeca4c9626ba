using System.Text.RegularExpressions;

namespace BnDist.Core.Tests;

/// <summary>The project explains itself: what the code cites exists in the repository.</summary>
public sealed partial class DocumentationTests
{
    [Fact]
    public void Every_section_the_code_cites_exists_in_docs_architecture_and_nothing_cites_a_document_outside_the_repository()
    {
        string root = RepositoryRoot();
        string doc = File.ReadAllText(Path.Combine(root, "docs", "architecture.md"));
        var sections = SectionHeading().Matches(doc).Select(m => m.Groups[1].Value).ToHashSet();
        Assert.NotEmpty(sections);
        var problems = new List<string>();
        foreach (string file in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(root, file);
            if (relative.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")) continue;
            string text = File.ReadAllText(file);
            foreach (Match m in Citation().Matches(text))
                if (!sections.Contains(m.Groups[1].Value)) problems.Add($"{relative} cites docs/architecture.md §{m.Groups[1].Value}, which does not exist");
            if (text.Contains("DESIGN" + " §", StringComparison.Ordinal)) problems.Add($"{relative} cites DESIGN, a document outside the repository");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Contains("docs/architecture.md", File.ReadAllText(Path.Combine(root, "README.md")));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "BnDist.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no BnDist.sln above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"^## (\d+)\. ", RegexOptions.Multiline)]
    private static partial Regex SectionHeading();

    [GeneratedRegex(@"docs/architecture\.md §(\d+)")]
    private static partial Regex Citation();
}
