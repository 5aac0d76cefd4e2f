import ArgumentParser
import BasinFusion
import BasinIO
import BasinNet
import Foundation

/// The corrections of a point (`basin path`, `basin fit`) or of a combination of models (`basin soup`,
/// `basin merge`): `--bn-reset DATA`, `--repair DATA`, `--bn-batch N`.
struct CorrectionOptions: ParsableArguments {
    @Option(name: .customLong("bn-reset"), help: ArgumentHelp("Recompute every BatchNorm's running statistics of each point, soup or merge over this data set (as torch.optim.swa_utils.update_bn: statistics reset, train mode, dataset order) before evaluating or writing it.", valueName: "DATA"))
    var bnReset: String?

    @Option(help: ArgumentHelp("REPAIR each point, soup or merge (Jordan et al. 2022): rescale every conv/linear channel's pre-activation statistics on this data set to the same weighted mean of the models' statistics (the interpolation of the endpoints' on a path), then evaluate or write it.", valueName: "DATA"))
    var repair: String?

    @Option(name: .customLong("bn-batch"), help: "Batch size of the BatchNorm reset and REPAIR passes (update_bn's loader batch).")
    var bnBatch: Int = 64

    func validate() throws {
        try Check.range(bnBatch, 1...Check.maxBatch, "--bn-batch")
    }

    /// For commands that apply one correction: both at once is an error.
    func validateOne() throws {
        try validate()
        if bnReset != nil && repair != nil { throw ValidationError("choose one of --bn-reset and --repair") }
    }

    /// The data set of the correction, whichever was given.
    var dataPath: String? { bnReset ?? repair }

    func dataset(_ path: String, fits model: LoadedModel) throws -> Dataset {
        let data = try Dataset(path: path)
        try LoadedModel.check(data, fits: model)
        return data
    }

    /// The correction asked for (the BatchNorm reset first when both are given); nil for none.
    func make(for model: LoadedModel) throws -> PointCorrection? {
        if let bnReset {
            return .bnReset(try BatchNormReset(network: model.network, data: dataset(bnReset, fits: model), batchSize: bnBatch, model: model.path))
        }
        if let repair {
            return .repair(try Repair(network: model.network, like: model.params, data: dataset(repair, fits: model),
                                      batchSize: bnBatch, model: model.path))
        }
        return nil
    }

    /// What the correction is called in messages.
    var describe: String {
        if let bnReset { return "BatchNorm statistics recomputed on \(bnReset) (batch \(bnBatch))" }
        if let repair { return "REPAIRed on \(repair) (batch \(bnBatch))" }
        return "uncorrected"
    }

    /// Recorded in a written model's metadata: what its statistics were recomputed or repaired on.
    var metadata: [String: String] {
        if let bnReset { return ["basin.bn_reset": "data=\(URL(fileURLWithPath: bnReset).lastPathComponent) batch=\(bnBatch)"] }
        if let repair { return ["basin.repair": "data=\(URL(fileURLWithPath: repair).lastPathComponent) batch=\(bnBatch)"] }
        return [:]
    }
}

/// Rewrites a written soup or merge with its corrected tensors (`correct`, given the written parameters), in the
/// written dtypes, through the same atomic checkpoint writer (the corrected file replaces the uncorrected one
/// only once complete). `model` is what to read back (the file, the index of a sharded file, or the folder). If
/// anything fails, every file in `written` is removed: an uncorrected model is not what was asked for, and
/// nothing half-done stays behind.
func rewriteCorrected(_ outURL: URL, model: String, written: [String], architecture: ArchitectureOptions, recipe: MergeRecipe,
                      inputs: [(label: String, source: any TensorSource)], shardSize: Int, extraMetadata: [String: String],
                      correct: (ParameterSet) throws -> ParameterSet) throws -> [String] {
    do {
        let merged = try architecture.load(model)
        let fixed = try correct(merged.params)
        let dtypes = merged.dtypes
        return try MergeExport.write(fixed, to: outURL, dtype: { dtypes[$0] ?? .f32 }, recipe: recipe, inputs: inputs,
                                     shardSize: shardSize, extraMetadata: extraMetadata).map(\.path)
    } catch {
        for path in written { try? FileManager.default.removeItem(atPath: path) }
        throw error
    }
}
