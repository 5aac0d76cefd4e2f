import ArgumentParser
import BasinIO
import Foundation

struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Split a data set by rows into two files (e.g. a training part and a held-out part).")

    @Argument(help: "Data set (safetensors with x and y).")
    var data: String

    @Option(help: "Rows before this index go to the first output, the rest to the second.")
    var at: Int

    @Argument(help: "Output for rows 0..<at.")
    var head: String

    @Argument(help: "Output for rows at..<N.")
    var tail: String

    func run() throws {
        let d = try Dataset(path: data)
        guard at > 0, at < d.count else { throw ValidationError("--at must be between 1 and \(d.count - 1) for \(data) (\(d.count) rows)") }
        let input = URL(fileURLWithPath: data)
        for out in [head, tail] { try OutputGuard.check(output: URL(fileURLWithPath: out), inputs: [input]) }
        try d.slice(0..<at).write(to: URL(fileURLWithPath: head))
        try d.slice(at..<d.count).write(to: URL(fileURLWithPath: tail))
        print("\(head): \(at) rows; \(tail): \(d.count - at) rows")
    }
}
