# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
DATA ?= ../shared/data
VENV := .venv
BIN := $(VENV)/bin

# a held-out sunset (smooth sky) of flickr8k-1k/test.txt, for the photo model
SUNSET := 1312227131_771b5ed201.jpg
# the first eight photos of flickr8k-1k/test.txt (held out from training)
CAPTION_PHOTOS := 1001773457_577c3a7d70.jpg 1042590306_95dea0916c.jpg 1056338697_4f7d7ce270.jpg \
	1084104085_3b06223afe.jpg 1087539207_9f77ab3aaf.jpg 108898978_7713be88fc.jpg 109202801_c6381eef15.jpg \
	1110208841_5bb6806afe.jpg

.PHONY: install demo test fuzz bench speech-models face-models clean

$(BIN)/vqtool: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.13.0 is the local CPU wheel (an unpinned torch would pull CUDA builds)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,eval,caption-train,rl,figures]'
	touch $@

install: $(BIN)/vqtool

demo: install
	mkdir -p out
	$(BIN)/vqtool encode docs/demo.png -o out/demo.vqc
	$(BIN)/vqtool inspect out/demo.vqc
	$(BIN)/vqtool decode out/demo.vqc -o out/demo.png
	$(BIN)/vqtool compare docs/demo.png out/demo.png
	$(BIN)/vqtool encode docs/demo.png --compress -o out/demo-small.vqc
	$(BIN)/vqtool inspect out/demo-small.vqc
	$(BIN)/vqtool decode out/demo-small.vqc -o out/demo-small.png
	cmp out/demo.png out/demo-small.png && echo "range-coded codes decode to the same image"
	$(BIN)/vqtool encode $(DATA)/flickr8k-1k/images/$(SUNSET) --compress --quality 3 -o out/sunset-q3.vqc
	$(BIN)/vqtool encode $(DATA)/flickr8k-1k/images/$(SUNSET) --compress -o out/sunset.vqc
	$(BIN)/vqtool inspect out/sunset-q3.vqc out/sunset.vqc
	$(BIN)/vqtool decode out/sunset-q3.vqc out/sunset.vqc -o out/
	$(BIN)/vqtool compare $(DATA)/flickr8k-1k/images/$(SUNSET) out/sunset-q3.png
	$(BIN)/vqtool compare $(DATA)/flickr8k-1k/images/$(SUNSET) out/sunset.png
	@echo "look: out/sunset-q3.png and out/sunset.png (a held-out photo, range-coded at quality 3 and 8)"
	$(BIN)/vqtool sample --class cat -n 16 --seed 1 -o out/cats.png
	$(BIN)/vqtool encode $(DATA)/fsdd/recordings/7_theo_0.wav -o - | $(BIN)/vqtool decode - --to spk3 -o out/theo-as-nicolas.wav
	$(BIN)/vqtool convert-voice $(DATA)/fsdd/recordings/7_theo_0.wav --to-voice $(DATA)/speechocean/audio/0003/000030012.flac -o out/theo-as-unseen.wav
	@echo "listen: out/theo-as-nicolas.wav (built-in voice spk3) and out/theo-as-unseen.wav (zero-shot)"
	$(BIN)/python scripts/test_faces.py $(DATA)/smiles/smiles.zip 8 out/faces-smile
	$(BIN)/vqtool fade out/faces-smile/*.jpg --grid smile=0:1:8 -o out/fader-smile.png
	$(BIN)/python scripts/test_faces.py $(DATA)/utkface/utkface-64.zip 8 out/faces-utk
	$(BIN)/vqtool fade out/faces-utk/*.jpg --grid young=0:1:6 --male 1 -o out/fader-young.png
	$(BIN)/vqtool fade out/faces-utk/03-*.jpg --male 0.1 --young 0.9 --paste -o out/face-edited.png
	@echo "look: out/fader-smile.png and out/fader-young.png (sweeps), out/face-edited.png (pasted edit)"
	$(BIN)/vqtool predict-motion $(DATA)/cmu-mocap/test/basketball/basketball_1.txt -n 10 -o out/basketball-futures.gif
	$(BIN)/vqtool predict-motion $(DATA)/cmu-mocap/test/basketball/basketball_1.txt -n 5 -o out/basketball-futures.png
	$(BIN)/vqtool predict-motion $(DATA)/cmu-mocap/test/basketball/basketball_1.txt -n 2 -o out/basketball-future.bvh
	@echo "look: out/basketball-futures.gif and .png (ten and five futures of the clip's last 2 s); out/basketball-future_1.bvh opens in Blender"
	$(BIN)/vqtool caption $(DATA)/flickr8k-1k/images/1001773457_577c3a7d70.jpg -n 5
	$(BIN)/vqtool caption $(addprefix $(DATA)/flickr8k-1k/images/,$(CAPTION_PHOTOS)) -n 5 --rank -o out/captions.png
	@echo "look: out/captions.png (eight held-out Flickr8k photos, five captions each, most typical first)"
	$(BIN)/vqtool match "A man is playing a guitar" "A person plays an instrument"
	$(BIN)/vqtool match "The company said profit rose." "Profit rose, the company said." -m text-msrp
	$(BIN)/vqtool reconstruct-text "a dog is running through the grass" "two women are dancing on a stage"
	$(BIN)/vqtool interpolate-text "a dog is running through the grass" "two women are dancing on a stage" --steps 5
	$(BIN)/vqtool dynamics sample -m dynamics-grid --state 0,0,1,3,5,3 --action up -n 1000 --seed 0
	$(BIN)/vqtool dynamics sample -m dynamics-toy --x 0.5 -n 8 --seed 0
	$(BIN)/vqtool dynamics plot -m dynamics-grid -o out/dynamics-grid.png
	@echo "look: out/dynamics-grid.png (the ghosts' next positions: true against the learned model)"

test: install
	$(BIN)/python -m pytest -q --durations=15

fuzz: install  # the fuzz suite at 10,000 inputs per family (make test runs 150), about a quarter of an hour
	VQTOOL_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -q tests/test_fuzz.py

bench: install
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_vqvae.py
	$(BIN)/python bench/bench_prior.py
	$(BIN)/python bench/bench_rd.py
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_vqc_size.py
	$(BIN)/python bench/bench_speech.py --hour
	$(BIN)/python bench/bench_fader.py
	$(BIN)/python bench/bench_motion.py
	$(BIN)/python bench/bench_caption.py
	$(BIN)/python bench/bench_text.py
	$(BIN)/python bench/bench_dynamics.py
	$(BIN)/pip install -q -e '.[text-bench]' && $(BIN)/python bench/bench_text_baselines.py
	$(BIN)/python bench/bench_units.py  # needs Debian's espeak-ng (apt-get install espeak-ng)

speech-models: install  # the shipped speech checkpoints, about 135 minutes on 2 CPU cores
	VQ=$(BIN)/vqtool DATA=$(DATA) scripts/train-speech.sh 55

face-models: install  # the shipped face checkpoints, about 70 minutes on 2 CPU cores
	VQ=$(BIN)/vqtool DATA=$(DATA) scripts/train-faces.sh 25 28

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
