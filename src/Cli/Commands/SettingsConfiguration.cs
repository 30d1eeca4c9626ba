using System.CommandLine;
using Microsoft.Extensions.Configuration;

namespace BnDist.Cli.Commands;

/// <summary>
/// The options pattern's sources for the settings classes: appsettings.json in the working
/// directory, then environment variables BNDIST__SECTION__NAME (BNDIST__COORDINATOR__WORKERS=4,
/// BNDIST__WORKER__THREADS=2, BNDIST__COORDINATOR__TRAINING__BATCHSIZE=256), each overriding the
/// one before. A command binds its section first and applies the options given on the command
/// line on top, so the command line wins; then it validates, and a bad value is a one-line
/// usage error.
/// </summary>
internal static class SettingsConfiguration
{
    public const string EnvironmentPrefix = "BNDIST__";

    public static T Bind<T>(string section, T settings) where T : class
    {
        try
        {
            var configuration = new ConfigurationBuilder()
                .SetBasePath(Directory.GetCurrentDirectory())
                .AddJsonFile("appsettings.json", optional: true, reloadOnChange: false)
                .AddEnvironmentVariables(EnvironmentPrefix)
                .Build();
            configuration.GetSection(section).Bind(settings);
            return settings;
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidDataException or FormatException)
        {
            string message = string.Join(' ', (e.InnerException is null ? e.Message : $"{e.Message} {e.InnerException.Message}")
                .Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
            throw new UsageException($"configuration (appsettings.json, {EnvironmentPrefix}{section.ToUpperInvariant()}__…): {message}");
        }
    }

    /// <summary>The option's value when the command line gives it, else <paramref name="current"/>.</summary>
    public static T? Pick<T>(this ParseResult result, Option<T> option, T? current) => result.Given(option) ? result.GetValue(option) : current;
}
