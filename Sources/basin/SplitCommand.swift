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

    func validate() throws {
        try Check.atLeast(at, 1, "--at")
    }

    func run() throws {
        var io = IOPlan()
        try io.file(data)
        io.output(head)
        io.output(tail)
        try io.check()
        let d = try Dataset(path: data)
        guard at < d.count else { throw ValidationError("--at must be between 1 and \(d.count - 1) for \(data) (\(d.count) rows)") }
        // Both files are written in full before either is renamed into place: all or nothing.
        let writers = [try d.slice(0..<at).writer(to: URL(fileURLWithPath: head), protecting: io.inputs),
                       try d.slice(at..<d.count).writer(to: URL(fileURLWithPath: tail), protecting: io.inputs)]
        try SafeTensorsWriter.finish(writers)
        print("\(head): \(at) rows; \(tail): \(d.count - at) rows")
    }
}
