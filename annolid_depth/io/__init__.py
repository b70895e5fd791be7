"""Everything that touches files: decoding the video, writing the outputs."""
from ..errors import require_opencv

require_opencv()  # before a module of this package imports cv2
