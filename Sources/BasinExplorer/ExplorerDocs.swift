import BasinFusion
import BasinNet
import BasinTensor
import BasinUI
import Foundation

/// Writes docs/explorer.md (and the README's capture) from the explorer itself: text captures of every view
/// reached by keys on the sample models, the key map from the keymap, and figures measured while it runs
/// (`basin docs`). Nothing in the document is typed by hand except the prose around them.
package enum ExplorerDocs {
    package struct Settings: Sendable {
        /// Points along each path, fit epochs and landscape grid of the captured sessions.
        package var pathPoints = 41
        package var fitEpochs = 10
        package var landscapeResolution = 25
        /// Repeats of the `basin bench ui` key script for the speed figures.
        package var benchRepeats = 3
        package init() {}
    }

    package struct Document: Sendable {
        /// docs/explorer.md.
        package var markdown: String
        /// The path view after `m` and `f`, for the README.
        package var readmeCapture: String
    }

    /// Files of the sample session under SampleModels/.
    static func engine(_ samples: URL, seeds: [Int]) throws -> ExplorerEngine {
        try ExplorerEngine.load(
            models: seeds.map { samples.appendingPathComponent("seeds/mlp-seed\($0).safetensors").path },
            data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path })
    }

    /// Runs the sessions and the bench and returns the document. `progress` names each step as it starts.
    package static func generate(samples: URL, settings: Settings = Settings(),
                                 progress: (String) -> Void = { _ in }) throws -> Document {
        var o = ExplorerOptions()
        o.pathPoints = settings.pathPoints
        o.fitEpochs = settings.fitEpochs
        o.landscapeResolution = settings.landscapeResolution
        var sections: [(title: String, text: String, screen: String)] = []

        progress("two seeds: path, fit, match, permutation, soup, landscape")
        let two = try engine(samples, seeds: [0, 1])
        var d = InlineDriver(two, options: o)
        sections.append(("Path view (home)", "`basin` with no arguments: the sample session, linear path between two independently trained MLPs, train and test loss, the barrier marked, cursor at t = 0.5.", d.text()))
        d.keys(.char("m"))
        d.keys(.char("f"))
        d.keys(.char("l"))
        let readme = d.text()
        sections.append(("Path view after `f` (fit) and `m` (weight matching)", "The fitted Bezier curve and the straight line after alignment overlaid on the original straight line; the barrier column compares them.", readme))
        d.keys(.char("v"))
        sections.append(("Permutation view", "Similarity of A's units (rows) with B's (columns) before and after alignment (a window of units around the selected match), the matches with their scores (* = moved), units moved, mean similarity before/after, and the objective per coordinate-descent step.", d.text()))
        d.keys(.char("v"))
        let test = two.dataNames.count - 1
        let unaligned = d.app.state.soup.metrics?[test].accuracy ?? .nan
        d.keys(.char("a"))
        let aligned = d.app.state.soup.metrics?[test].accuracy ?? .nan
        sections.append(("Soup view", "One slider per model; the merged model's metrics update as you move them, next to the ensemble's. Here after `m` and `a`: the uniform soup of seed0 and seed1 aligned to it reaches \(percent(aligned)) test accuracy (the same soup without alignment: \(percent(unaligned))).", d.text()))
        d.keys(.char("v"))
        sections.append(("Landscape view", "Test loss over the plane through A, the fitted bend θ and B (Garipov et al.), with the fitted path drawn on it (•).", d.text()))

        progress("three seeds: barrier matrix, soup triangle, landscape, help")
        var d3 = InlineDriver(try engine(samples, seeds: [0, 1, 2]), options: o)
        sections.append(("Path view with three models", "`basin explore seed0 seed1 seed2 --data train --data test`: the pairwise barrier matrix; p cycles the pairs and the chain through all.", d3.text()))
        d3.keys(.char("v"), .char("v"))
        sections.append(("Soup view with three models", "Test loss over the coefficient triangle, the current mixture marked (◆).", d3.text()))
        d3.keys(.char("v"))
        sections.append(("Landscape through three models", "The plane through the three models, the chain through them drawn on it.", d3.text()))
        d3.keys(.char("?"))
        sections.append(("Help (`?`)", "Generated from the keymap for the current view.", d3.text()))

        progress("random directions, task vectors, lesson")
        var dr = InlineDriver(two, options: o)
        dr.keys(.char("v"), .char("v"), .char("v"))
        sections.append(("Landscape along random directions (`d`)", "With nothing fitted or aligned the landscape shows the plane through A along two filter-normalised random directions (Li et al. 2018; seed 0, d draws the next seed): A sits in a bowl whose walls are as high in every direction, while the plane through A, the bend and B shows the valley that joins two minima.", dr.text()))
        let family = try ExplorerEngine.load(
            models: ["ft-adam-lr1e-3", "ft-sgd-lr5e-2"].map { samples.appendingPathComponent("finetune/\($0).safetensors").path },
            data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
            base: samples.appendingPathComponent("finetune/base.safetensors").path)
        var dt = InlineDriver(family, options: o)
        dt.keys(.char("V"))
        let tv = dt.app.state.taskVectors.analysis
        sections.append(("Task-vector view (a base and its fine-tunes)", "`basin explore finetune/ft-adam-lr1e-3 finetune/ft-sgd-lr5e-2 --base finetune/base --data train --data test`: the cosine similarity of the task vectors (\(tv.map { String(format: "%.2f", $0.cosine[0][1] ?? .nan) } ?? "n/a") here), what TIES trimming at the density (←→) removes, how often the trimmed vectors disagree in sign (\(tv.map { percent($0.signConflict) } ?? "n/a") of the entries both touch) and what the sign election drops, per tensor as a heatmap (↑↓ selects), and the magnitude distribution: the picture behind task arithmetic, TIES and DARE.", dt.text()))
        var dl = InlineDriver(two, options: o)
        dl.keys(.char("L"))
        sections.append(("The guided lesson (`basin lesson`, or `L`)", "A narrated tour over the sample seeds, one step per screen: the barrier, why permutations exist, alignment, a fitted curve, a soup of aligned models, the landscape; then `basin lesson` goes on, in the same terminal, to the CNN samples (SampleModels/cnn, when present) for their channels' alignment, the BatchNorm reset and a soup of two CNNs: one tour of 14 steps (`basin lesson --cnn` takes the whole tour on the CNNs; `L` in any session, the session's tour). Each step sets the view up and names the key to press; the explorer's keys keep working under it. Enter or → goes on, ← back, L closes it, q quits.", dl.text()))

        let cnnArch = samples.appendingPathComponent("cnn/vgg.arch.json")
        if FileManager.default.fileExists(atPath: cnnArch.path) {
            progress("CNN samples: BN-reset and REPAIR curves")
            let cnn = try ExplorerEngine.load(
                models: [0, 1].map { samples.appendingPathComponent("cnn/vgg-seed\($0).safetensors").path },
                data: ["train", "test"].map { samples.appendingPathComponent("data/digits-\($0).safetensors").path },
                architecture: ArchitectureChoice(file: cnnArch))
            var dc = InlineDriver(cnn, options: o)
            dc.keys(.char("m"), .char("5"))
            let barrier = { (id: CurveID) in dc.app.state.path.curves[id]?.barrier(test).map { String(format: "%.2f", $0.height) } ?? "n/a" }
            sections.append(("BatchNorm networks (the CNN samples)", "`basin explore cnn/vgg-seed0.safetensors cnn/vgg-seed1.safetensors --arch cnn/vgg.arch.json --data train --data test` (or `basin lesson --cnn`): on a network with BatchNorm every straight path comes with two corrected versions in the one list of curves, each with its own glyph: `+reset` recomputes every BatchNorm's running statistics at each point on the first (train) data set, as `basin path --bn-reset` and PyTorch's `update_bn` do (batch 64), and `+REPAIR` renormalises every conv/linear channel to the interpolation of the endpoints' statistics (Jordan et al. 2022; `basin path --repair`). `b` switches the selected curve between naive, BN reset and REPAIR (a fitted curve gets its corrected version when asked); model at t, its metrics and `e` follow the selected curve, and the side panel shows the BN mode. An export of a corrected point writes the corrected model; its recipe's comment gives the command that rebuilds it (`basin merge RECIPE OUT --arch ARCH --bn-reset TRAIN --bn-batch 64`, or `--repair TRAIN` for a REPAIRed point of a line, chain or fitted curve; the popup says it too). In the soup view `b` switches the merged model between naive, BN reset and REPAIR (the goal: the weighted mean of the models' statistics with the soup's weights, as `basin soup --repair`; weighted soup and SLERP only, since task arithmetic, TIES and DARE are no weighted mean of the models), shown on the same `BN:` line and exported the same way; the landscape evaluates its plane with the statistics as interpolated (`BN naive`) or, after `b`, recomputed at every grid point on the train set (`BN reset`, as `basin landscape ... --bn-reset TRAIN`; one reset pass per point, in the background). Here after `m` and `5`: test barrier \(barrier(.linear)) on the straight line, \(barrier(CurveID.linear.with(.bnReset))) with BN reset, \(barrier(.alignedLine)) after weight matching and \(barrier(CurveID.alignedLine.with(.bnReset))) with matching and reset.", dc.text()))
        }

        progress("bench ui (\(settings.benchRepeats) repeats of the key script)")
        let bench = ExplorerBench.run(app: ExplorerApp(engine: two, size: Size(width: 120, height: 40)), repeats: settings.benchRepeats)

        var md = """
            # The explorer (`basin` / `basin explore`)

            <!-- Generated by `basin docs` from the explorer's renderer and keymap, with the figures measured when it ran.
                 Edit the generator (Sources/BasinExplorer/ExplorerDocs.swift), not this file. -->

            `basin` with no arguments opens the sample session (SampleModels/seeds/mlp-seed0 and mlp-seed1 with the digits
            train and test splits). `basin explore MODEL MODEL [MODEL ...] --data TRAIN --data TEST [--base BASE] [--heldout DATA]
            [--eval NAME=FILE ...] [--evaluate CMD [--evaluate-jobs N]] [--activation A | --arch FILE] [--theme NAME] [--fit-epochs N] [--points N] [--landscape N]`
            opens any two or more models of one architecture; greedy soup chooses its ingredients on `--heldout` data, else on
            the last `--data` (the test split in the sample session, whose seeds trained on all of digits-train). Each `--eval
            NAME=FILE` is a named evaluation set the soup view reports the merged model on, one row per set beside the `--data`
            sets (e.g. the three modular-arithmetic operations' test sets for the LLaMA fine-tunes in SampleModels, to see a
            merge trade one task for another). On token data (language models) metrics read loss, perplexity and token accuracy.
            With `--evaluate CMD [--evaluate-jobs N] [--evaluate-timeout S] [--metric NAME] [--minimize]` the soup view hands
            each soup, written as a model folder in a temporary folder, to CMD in the background (the contract of `basin merge
            --evaluate`: one JSON object of named metrics on standard output, a non-zero exit fails the candidate;
            [merging.md](merging.md)), N at a time (each in its own process group) with the newest soup next, and shows its
            metrics as they arrive (or the failure with the evaluator's standard error; a soup seen before shows its metrics
            again without a new run). `g` then chooses the greedy soup by the evaluator's metric, as `basin soup --evaluate
            --greedy` does: each ingredient and the uniform soup scored N at a time, ingredients added in order of the metric
            while the soup does not get worse; the view lists each candidate's value. Each candidate is removed once
            evaluated, and q stops every running evaluator and removes the folder. The theme is `--theme NAME|FILE`,
            else `BASIN_THEME`, else dark.

            Everything the explorer computes goes through the engine (BasinFusion: paths and the path evaluator, curve
            fitting, weight/activation matching, merge methods, soups, the landscape plane, the soup simplex and the barrier
            matrix). Path curves, fits, matching, barrier matrices, the soup triangle and the landscape run in the
            background and fill in progressively; the status bar shows the job (progress, epoch, loss, time left) and Esc
            cancels it, or, while curves are still being evaluated, which and how many are complete (`BN reset: 1/2 curves`).
            A landscape with BN reset moves its progress per grid point (each is a train pass). The UI never waits for them.

            Themes: the explorer draws with colour roles that a theme maps to colours and attributes. `Themes/` holds `dark`
            (the default, also compiled in), `light`, `mono` and `high-contrast`; `BASIN_THEMES_DIR` adds folders to look in.
            `NO_COLOR` turns colour off (attributes only, heatmaps as an ASCII density ramp), 8-colour terminals get the
            nearest basic colours, and a non-UTF-8 locale switches every border, plot and bar to ASCII. The file format
            (`role = colour attributes` lines) is in [Themes/README.md](../Themes/README.md).

            The captures below are the in-memory backend's text at 100x30 (colours dropped; heatmaps drawn with the
            monochrome density ramp), with \(settings.pathPoints) points per path, \(settings.fitEpochs)-epoch fits and a \(settings.landscapeResolution)x\(settings.landscapeResolution) landscape.

            ## Key map


            """
        md += keyMap(ExplorerApp.makeKeymap())
        md += "Mouse: click a tab to switch views, click in the path plot to put the cursor there, click the soup view's uniform / greedy buttons; the wheel scrubs t (path view) or moves the selection.\n\n"
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        // The machine's 1-minute load average when the figures were taken (other work shares the cores).
        let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map { ", load average \($0)" } ?? ""
        md += """
            ## Speed

            `basin bench ui` loads the sample session (full test split, \(two.datasets[test].count) rows; train \(two.datasets[0].count) rows), replays a
            scripted session of \(ExplorerBench.script.count) keys (scrubbing, path types, views, soup sliders) through `update` + `render` with
            the background jobs running on threads as in the real loop, and prints the keypress-to-frame latency (p50 / p95)
            and the time to render and diff a \(bench.frameWidth)x\(bench.frameHeight) frame. Target: 50 ms per key.

            Measured by `basin docs` (\(build) build, \(ProcessInfo.processInfo.activeProcessorCount) cores, OpenBLAS \(BLAS.threads) threads\(load), \(bench.keys) keys): keypress to frame
            p50 \(ms(bench.p50Ms)), p95 \(ms(bench.p95Ms)) (max \(ms(bench.maxMs))); \(bench.frameWidth)x\(bench.frameHeight) frame render \(ms(bench.renderMs)), render + diff
            \(ms(bench.renderAndDiffMs)). The soup view evaluates the merged model synchronously; path curves, fits, matching, the
            barrier matrix, the soup triangle and the landscape grid never run on the UI thread.


            """
        for s in sections {
            md += "## \(s.title)\n\n\(s.text)\n\n```text\n\(s.screen)\n```\n\n"
        }
        return Document(markdown: md.trimmingCharacters(in: .whitespacesAndNewlines) + "\n", readmeCapture: readme)
    }

    /// The key map as Markdown tables: the global keys, then each view's.
    package static func keyMap(_ keymap: Keymap<ExplorerAction>) -> String {
        var md = ""
        for view in [Keymaps.global] + ExplorerView.allCases.map(\.rawValue) {
            let entries = keymap.bindings.filter { $0.context == view }
            guard !entries.isEmpty else { continue }
            md += "**\(view == Keymaps.global ? "Everywhere" : ExplorerView(rawValue: view)!.title + " view")**\n\n| keys | action |\n|---|---|\n"
            for b in entries {
                md += "| \(b.keys.map { "`\($0.description)`" }.joined(separator: " ")) | \(b.description) |\n"
            }
            md += "\n"
        }
        return md
    }

    static func percent(_ v: Double) -> String { v.isFinite ? String(format: "%.1f%%", v * 100) : "n/a" }
    static func ms(_ v: Double) -> String { String(format: v < 1 ? "%.2f ms" : "%.1f ms", v) }

    /// Replaces the text between `<!-- NAME:begin ... -->` and `<!-- NAME:end -->` (the markers stay).
    package static func replaceBlock(_ name: String, in text: String, with block: String) -> String? {
        guard let b = text.range(of: "<!-- \(name):begin"), let bEnd = text[b.upperBound...].range(of: "-->\n"),
              let e = text.range(of: "<!-- \(name):end -->"), bEnd.upperBound <= e.lowerBound else { return nil }
        return String(text[..<bEnd.upperBound]) + block + (block.hasSuffix("\n") ? "" : "\n") + String(text[e.lowerBound...])
    }
}
