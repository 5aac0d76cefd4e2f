import ArgumentParser
import BasinExplorer
import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// Which plane `basin landscape` evaluates.
enum LandscapePlaneKind: String, ExpressibleByArgument, CaseIterable, Encodable {
    /// Through three models (Garipov et al. 2018, section 3).
    case models
    /// Through A, the fitted bend of a bends file, and B.
    case bend
    /// Through one model along two filter-normalised random directions (Li et al. 2018).
    case random
}

struct LandscapeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "landscape",
        abstract: "Loss and accuracy over a plane in weight space: through three models, through A, a fitted bend and B, or around one model along two seeded filter-normalised random directions (Li et al. 2018).",
        discussion: """
            basin landscape A B C --data D              plane through three models (path A -> B -> C drawn)
            basin landscape A B --bends F --data D      plane through A, the fitted bend of F and B (the curve drawn)
            basin landscape A --data D [--seed S]       plane around A along two random filter-normalised directions
            With --bn-reset TRAIN (networks with BatchNorm) every grid point's BatchNorm statistics are recomputed on
            TRAIN first, as `basin path --bn-reset` does (REPAIR has no goal on a plane: its points are no weighted
            mean of models).
            """)

    @Argument(help: "One, two or three models (see above).")
    var models: [String]

    @Option(help: "Data set the grid is evaluated on (safetensors with x and y).")
    var data: String

    @Option(help: "Grid points per side (>= 2).")
    var grid: Int = 21

    @Option(help: "Plane: models, bend or random (default: from the number of models and --bends).")
    var plane: LandscapePlaneKind?

    @Option(help: "Bends file written by `basin fit A B` (the bend plane; with several bends, the middle one).")
    var bends: String?

    @Option(help: "Seed of the random directions.")
    var seed: UInt64 = 0

    @Option(help: "The random plane covers [-span, span] on both axes, in units of the filter-normalised directions.")
    var span: Double = 1

    @Option(help: "Margin around the three points, as a fraction of their bounding box (models and bend planes).")
    var margin: Double = 0.2

    @Option(name: .customLong("bn-reset"), help: ArgumentHelp("Recompute every BatchNorm's running statistics of each grid point over this data set (as torch.optim.swa_utils.update_bn and `basin path --bn-reset`) before evaluating it.", valueName: "TRAIN"))
    var bnReset: String?

    @Option(name: .customLong("bn-batch"), help: "Batch size of the BatchNorm reset pass.")
    var bnBatch: Int = 64

    @OptionGroup var arch: ArchitectureOptions
    @OptionGroup var output: AnalysisOutputOptions

    var resolvedPlane: LandscapePlaneKind {
        if let plane { return plane }
        if bends != nil { return .bend }
        return models.count == 1 ? .random : .models
    }

    func validate() throws {
        guard (1...3).contains(models.count) else { throw ValidationError("give one, two or three models (got \(models.count))") }
        guard (2...401).contains(grid) else { throw ValidationError("--grid must be between 2 and 401 (got \(grid))") }
        // Li et al. plot spans of about 1; at 10^30 every point's weights overflow and the grid is all NaN.
        guard span > 0, span <= 1000 else { throw ValidationError("--span must be above 0 and at most 1000 (got \(span))") }
        guard margin >= 0, margin <= 10 else { throw ValidationError("--margin must be between 0 and 10 (got \(margin))") }
        try Check.range(bnBatch, 1...Check.maxBatch, "--bn-batch")
        switch resolvedPlane {
        case .models:
            guard models.count == 3 else { throw ValidationError("the models plane passes through three models (got \(models.count))") }
            if bends != nil { throw ValidationError("--bends goes with the bend plane (two models)") }
        case .bend:
            guard models.count == 2 else { throw ValidationError("the bend plane needs the fit's two endpoints A B (got \(models.count) models)") }
            guard bends != nil else { throw ValidationError("the bend plane needs --bends FILE (from `basin fit A B ... --out FILE`)") }
        case .random:
            guard models.count == 1 else { throw ValidationError("the random plane is centred on one model (got \(models.count))") }
            if bends != nil { throw ValidationError("--bends goes with the bend plane (two models)") }
        }
    }

    struct Report: Encodable {
        var plane: LandscapePlaneKind
        var models: [String]
        var data: String
        var grid: Int
        var seed: UInt64?
        /// `naive` (running statistics interpolated like every tensor) or `bn_reset`.
        var correction: String
        var xs: [Double]
        var ys: [Double]
        var loss: [[Double?]]
        var accuracy: [[Double?]]
        var anchors: [FigureAnchor]
        var path: [FigureAnchor]
        var minimum: Minimum
    }

    struct Minimum: Encodable {
        var x: Double
        var y: Double
        var loss: Double
        var accuracy: Double
    }

    func run() throws {
        var io = IOPlan()
        try io.models(models)
        try io.files([data])
        try io.file(bends)
        try io.file(arch.archFile)
        try io.file(bnReset)
        output.plan(&io)
        try io.check()
        let inputs = io.inputs
        let loaded = try loadCompatible(models, arch: arch)
        let dataset = try Dataset(path: data)
        try LoadedModel.check(dataset, fits: loaded[0])
        let p = loaded.map(\.params)
        let names = models.map(shortName)
        var reset: BatchNormReset?
        if let bnReset {
            let train = try Dataset(path: bnReset)
            try LoadedModel.check(train, fits: loaded[0])
            reset = try BatchNormReset(network: loaded[0].network, data: train, batchSize: bnBatch, model: loaded[0].path)
        }

        let weightPlane: WeightPlane, labels: [String], drawn: ModelPath?, title: String
        switch resolvedPlane {
        case .models:
            weightPlane = try WeightPlane.through(p[0], p[1], p[2], margin: margin)
            labels = names
            drawn = try .chain(p)
            title = "plane through \(names.joined(separator: ", "))"
        case .bend:
            let url = URL(fileURLWithPath: bends!)
            let file = try BendsFile.read(url, like: p[0])
            try BendsFile.checkEndpoints(file, file: url, startSHA256: try FileDigest.sha256(of: loaded[0].source),
                                         endSHA256: try FileDigest.sha256(of: loaded[1].source))
            let bend = file.bends[(file.bends.count - 1) / 2]
            weightPlane = try WeightPlane.through(p[0], bend, p[1], margin: margin)
            labels = [names[0], "θ", names[1]]
            drawn = try .withBends(file.type, from: p[0], to: p[1], bends: file.bends)
            title = "plane through \(names[0]), the fitted \(file.type.rawValue) bend θ and \(names[1])"
        case .random:
            weightPlane = try WeightPlane.randomDirections(center: p[0], seed: seed, span: span)
            labels = [names[0]]
            drawn = nil
            title = "\(names[0]) and two filter-normalised random directions (seed \(seed))"
        }

        let progress = ProgressLine(output)
        func point(_ x: Double, _ y: Double) -> ParameterSet {
            let q = weightPlane.point(x: x, y: y)
            return reset.map { $0.apply(q) } ?? q
        }
        guard let landscape = try LossLandscape.compute(plane: weightPlane, network: loaded[0].network, data: dataset, resolution: grid,
                                                        reset: reset, onPoint: { k, total in
            // A BN-reset point costs a train pass: show every point, not only finished rows.
            if reset != nil { progress.show("point \(k)/\(total), row \((k - 1) / grid + 1)/\(grid) (BN reset per point)") }
        }, onRow: { r, _ in if reset == nil { progress.show("row \(r + 1)/\(grid)") } }) else { return }
        progress.clear()
        let anchors = zip(weightPlane.anchors, labels).map { FigureAnchor(x: $0.0.x, y: $0.0.y, label: $0.1) }
        let path = drawn.map { d in (0...60).map { weightPlane.project(d.parameters(at: Double($0) / 60)) }.map { FigureAnchor(x: $0.x, y: $0.y, label: "") } } ?? []

        var best = Minimum(x: .nan, y: .nan, loss: .infinity, accuracy: .nan)
        for (r, row) in landscape.loss.enumerated() {
            for (c, v) in row.enumerated() where v.isFinite && v < best.loss {
                best = Minimum(x: landscape.xs[c], y: landscape.ys[r], loss: v, accuracy: landscape.accuracy[r][c])
            }
        }
        let figure = Figure(title: "\(dataset.name) loss · \(title)" + (reset == nil ? "" : " · BN reset"), valueLabel: "\(dataset.name) loss",
                            xLabel: resolvedPlane == .random ? "direction 1" : "x (weight-space distance)",
                            yLabel: resolvedPlane == .random ? "direction 2" : "y (weight-space distance)",
                            body: .heatmap(values: landscape.loss, x: weightPlane.xRange, y: weightPlane.yRange, anchors: anchors, path: path))

        if output.json {
            try printJSON(Report(plane: resolvedPlane, models: models, data: dataset.name, grid: grid,
                                 seed: resolvedPlane == .random ? seed : nil, correction: reset == nil ? "naive" : "bn_reset", xs: landscape.xs, ys: landscape.ys,
                                 loss: finite(landscape.loss), accuracy: finite(landscape.accuracy), anchors: anchors, path: path,
                                 minimum: best))
        } else if output.csv {
            print("x,y,loss,accuracy")
            for (r, y) in landscape.ys.enumerated() {
                for (c, x) in landscape.xs.enumerated() { print("\(x),\(y),\(landscape.loss[r][c]),\(landscape.accuracy[r][c])") }
            }
        } else {
            print(figure.text(width: 72, height: 24))
            print("")
            for a in anchors {
                let m = loaded[0].network.evaluate(point(a.x, a.y), on: dataset)
                print(String(format: "%@ at (%.4f, %.4f): loss %.5f, accuracy %.4f", a.label, a.x, a.y, m.loss, m.accuracy))
            }
            print(String(format: "lowest grid loss %.5f (accuracy %.4f) at (%.4f, %.4f)", best.loss, best.accuracy, best.x, best.y))
        }
        try output.writeSVG(figure, inputs: inputs)
    }
}
