# The sim-to-real ablation on CPU (cpu preset: MTL, 96x128, 8 epochs, 795 scenes): the plain generator
# with the plain colour jitter against the wide profile with the wide photometric augmentation.
set -e
cd /work/main
export PYTHONPATH=. OMP_NUM_THREADS=1
for p in nyu wide; do
  .venv/bin/python -m trainer prepare --out /tmp/abl/data-$p --num-train 795 --num-test 200 --seed 0 --height 96 --width 128 --workers 1 --profile $p > /dev/null 2>&1
done
ph_nyu=basic; ph_wide=wide
for p in nyu wide; do
  ph=$([ $p = nyu ] && echo basic || echo wide)
  .venv/bin/python -m trainer train --arch mtl --data /tmp/abl/data-$p --dataset synthetic --preset cpu --setting one-label \
    --out /tmp/abl/mtl-$p --set data.validation_images=120 --set data.photometric=$ph > /tmp/abl/mtl-$p.log 2>&1 &
done
wait
for p in nyu wide; do
  .venv/bin/python -m trainer evaluate --run /tmp/abl/mtl-$p --dataset nyuv2-mini --data ../shared/data/nyuv2-mini --out /tmp/abl/mtl-$p/real.json > /dev/null 2>&1
done
echo done
# each model on the other profile's test scenes
for p in nyu wide; do
  q=$([ $p = nyu ] && echo wide || echo nyu)
  .venv/bin/python -m trainer evaluate --run /tmp/abl/mtl-$p --data /tmp/abl/data-$q --out /tmp/abl/mtl-$p/cross-$q.json
done
