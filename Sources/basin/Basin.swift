import ArgumentParser
import BasinIO
import BasinNet
import BasinTensor
import Foundation

@main
struct Basin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "basin",
        abstract: "Explore how trained networks connect in weight space: paths, barriers, alignment, soups and merges.",
        subcommands: [
            EvalCommand.self, InspectCommand.self, TrainCommand.self, SplitCommand.self,
            PathCommand.self, FitCommand.self, BarriersCommand.self, LandscapeCommand.self, SimplexCommand.self, MatchCommand.self, MergeCommand.self, SoupCommand.self, BenchCommand.self,
            ExploreCommand.self, LessonCommand.self, DocsCommand.self,
        ],
        defaultSubcommand: ExploreCommand.self
    )

    /// Installs the signal handlers (temporary files removed on SIGINT/SIGTERM/SIGHUP, SIGXFSZ ignored, a
    /// clear message when a mapped input shrinks) before parsing and running the command.
    static func main() {
        ProcessSignals.install()
        main(nil)
    }
}
