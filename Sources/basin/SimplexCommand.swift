import ArgumentParser
import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import Foundation

struct SimplexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simplex",
        abstract: "The soup triangle of three models: loss and accuracy of every weighted average c_A A + c_B B + c_C C (coefficients summing to 1) on a grid of step 1/N.")

    @Argument(help: "Three models.")
    var models: [String]

    @Option(help: "Data set (safetensors with x and y).")
    var data: String

    @Option(help: "Grid steps per side: coefficients are multiples of 1/N (>= 1).")
    var grid: Int = 16

    @OptionGroup var arch: ArchitectureOptions
    @OptionGroup var output: AnalysisOutputOptions

    func validate() throws {
        guard models.count == 3 else { throw ValidationError("the soup triangle needs exactly three models (got \(models.count))") }
        guard (1...200).contains(grid) else { throw ValidationError("--grid must be between 1 and 200 (got \(grid))") }
    }

    struct Cell: Encodable {
        var weights: [Double]
        var loss: Double?
        var accuracy: Double?
    }

    struct Report: Encodable {
        var models: [String]
        var data: String
        var grid: Int
        var cells: [Cell]
        var best: Cell
    }

    func run() throws {
        var io = IOPlan()
        try io.models(models)
        try io.files([data])
        try io.file(arch.archFile)
        output.plan(&io)
        try io.check()
        let inputs = io.inputs
        let loaded = try loadCompatible(models, arch: arch)
        let dataset = try Dataset(path: data)
        try LoadedModel.check(dataset, fits: loaded[0])
        let p = loaded.map(\.params)
        let progress = ProgressLine(output)
        guard let simplex = try SoupSimplex.compute(resolution: grid, network: loaded[0].network, data: dataset,
                                                    progress: { done, total in progress.show("row \(done)/\(total)") },
                                                    merge: { w in ParameterSet.combination(zip(p, w).map { ($0, Float($1)) }) })
        else { return }
        progress.clear()
        var cells: [Cell] = []
        for r in 0...grid {
            for c in 0...grid {
                guard let w = SoupSimplex.coefficients(row: r, column: c, resolution: grid) else { continue }
                cells.append(Cell(weights: w, loss: finite(simplex.loss[r][c]), accuracy: finite(simplex.accuracy[r][c])))
            }
        }
        let best = cells.filter { $0.loss != nil }.min { $0.loss! < $1.loss! } ?? cells[0]
        let names = models.map(shortName)
        let figure = Figure(title: "\(dataset.name) loss of the weighted soups of \(names.joined(separator: ", "))",
                            valueLabel: "\(dataset.name) loss", body: .triangle(values: simplex.loss, corners: names))
        if output.json {
            try printJSON(Report(models: models, data: dataset.name, grid: grid, cells: cells, best: best))
        } else if output.csv {
            print((names.map { "w_\($0)" } + ["loss", "accuracy"]).joined(separator: ","))
            for c in cells {
                print((c.weights.map { "\($0)" } + ["\(c.loss ?? .nan)", "\(c.accuracy ?? .nan)"]).joined(separator: ","))
            }
        } else {
            print(figure.text())
            print("")
            for (i, n) in names.enumerated() {
                let corner = cells.first { $0.weights[i] == 1 }!
                print(String(format: "%@ alone: loss %.5f, accuracy %.4f", n, corner.loss ?? .nan, corner.accuracy ?? .nan))
            }
            let centre = cells.min { a, b in
                a.weights.map { abs($0 - 1.0 / 3) }.reduce(0, +) < b.weights.map { abs($0 - 1.0 / 3) }.reduce(0, +)
            }!
            print(String(format: "uniform soup (nearest grid point %@): loss %.5f, accuracy %.4f",
                         centre.weights.map { String(format: "%.3f", $0) }.joined(separator: "/"), centre.loss ?? .nan, centre.accuracy ?? .nan))
            print(String(format: "best soup %@: loss %.5f, accuracy %.4f",
                         best.weights.map { String(format: "%.3f", $0) }.joined(separator: "/"), best.loss ?? .nan, best.accuracy ?? .nan))
        }
        try output.writeSVG(figure, inputs: inputs)
    }
}
