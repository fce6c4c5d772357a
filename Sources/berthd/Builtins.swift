import BerthBtrfsSnapshotter
import BerthContentPlugin
import BerthContainersService
import BerthContentService
import BerthCore
import BerthDevmapperSnapshotter
import BerthDiffService
import BerthGCPlugin
import BerthImagesService
import BerthLeasesService
import BerthEventsPlugin
import BerthExamplePlugin
import BerthEventsService
import BerthGRPCServerPlugin
import BerthIntrospectionService
import BerthMetadataPlugin
import BerthNamespacesService
import BerthNativeSnapshotter
import BerthOverlaySnapshotter
import BerthRuntimeV2
import BerthSnapshotsService
import BerthStreamingService
import BerthTasksService
import BerthTransferPlugin
import BerthTransferService
import BerthVersionService
import BerthWalkingDiffer

/// Every compiled-in plugin, in tie-break order for the init graph. Adding a plugin means adding its target to
/// Package.swift and its registration here; nothing else registers plugins.
let builtins: [Registration] = [
    BerthEventsPlugin.registration,
    BerthContentPlugin.registration,
    BerthOverlaySnapshotter.registration,
    BerthNativeSnapshotter.registration,
    BerthBtrfsSnapshotter.registration,
    BerthDevmapperSnapshotter.registration,
    BerthMetadataPlugin.registration,
    BerthGCPlugin.registration,
    BerthWalkingDiffer.registration,
    BerthDiffService.serviceRegistration,
    BerthTransferPlugin.registration,
    BerthStreamingService.managerRegistration,
    BerthVersionService.registration,
    BerthIntrospectionService.registration,
    BerthNamespacesService.registration,
    BerthEventsService.registration,
    BerthContentService.registration,
    BerthImagesService.registration,
    BerthLeasesService.registration,
    BerthSnapshotsService.registration,
    BerthDiffService.registration,
    BerthStreamingService.registration,
    BerthTransferService.registration,
    BerthRuntimeV2.registration,
    BerthContainersService.registration,
    BerthTasksService.registration,
    BerthExamplePlugin.registration,
    BerthGRPCServerPlugin.registration,
]
